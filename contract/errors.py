"""One exception tree for Switchboard, with structured fields where they help."""

from __future__ import annotations

from contract.deadletters import Reason


class SwitchboardError(Exception):
    """Base of every error that Switchboard raises on purpose."""


class ConfigurationError(SwitchboardError):
    """A setting is missing or malformed; the message names the variable."""


class ServiceUnavailable(SwitchboardError):
    """Kafka or ClickHouse did not answer after the bounded start-up retries."""


class BadCallback(SwitchboardError):
    """A callback that cannot be accepted or normalized; `reason` is for logs and people,
    `code` the dead-letter reason when the intake meets it."""

    def __init__(
        self, reason: str, *, sid: str | None = None, code: Reason = Reason.BAD_ENVELOPE
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sid = sid
        self.code = code


class DeliveryFailed(SwitchboardError):
    """Kafka did not acknowledge a record in time."""

    def __init__(self, reason: str, *, topic: str, key: str | None = None) -> None:
        super().__init__(f"{topic} key={key}: {reason}")
        self.topic = topic
        self.key = key
