"""The index of SIDs the reconcile stage may fetch: pure, built from two compacted topics.

`processors.sid-state` says where each SID stands (a final status or a tombstone takes
it out); `reconcile.checks` says when it was last fetched. `due` picks the stuck ones:
not final, older than the kind's threshold, younger than the give-up age, and not
fetched within the refetch interval, oldest first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.statuses import final

logger = logging.getLogger(__name__)

# What can be fetched: messages and calls (recordings and transcriptions are not
# counted anywhere and their forwards follow a real callback only).
MESSAGE_KINDS = frozenset({CallbackKind.SMS})
CALL_KINDS = frozenset({CallbackKind.VOICE, CallbackKind.INBOUND_CALL})
_FINAL = {kind: final(kind.spec.ranks) for kind in MESSAGE_KINDS | CALL_KINDS}


@dataclass(slots=True)
class Stuck:
    kind: CallbackKind
    sid: str
    status: str
    changed_at: float  # when the intake saw its last change (edge time)
    tags: dict[str, str] = field(default_factory=dict)
    number: str | None = None  # our number
    checked_at: float = 0.0  # last fetched from the REST API

    @property
    def campaign(self) -> str:
        return self.tags.get("campaign", "")


@dataclass(frozen=True, slots=True)
class Candidate:
    partition: int
    key: str  # the state topic's key: m:SID or c:SID
    stuck: Stuck


def check_record(checked_at: float, status: str | None) -> bytes:
    return orjson.dumps({"checked_at": checked_at, "status": status})


class StuckIndex:
    def __init__(self) -> None:
        self.stuck: dict[int, dict[str, Stuck]] = {}
        self.known: dict[int, set[str]] = {}  # every key in the state topic, final or not
        self.checks: dict[int, dict[str, float]] = {}

    def clear(self) -> None:
        self.stuck.clear()
        self.known.clear()
        self.checks.clear()

    def partitions(self) -> set[int]:
        return set(self.known)

    def apply_state(self, partition: int, key: str, value: bytes | None) -> None:
        """One record of `processors.sid-state` (None: a tombstone)."""
        stuck = self.stuck.setdefault(partition, {})
        known = self.known.setdefault(partition, set())
        if value is None:
            stuck.pop(key, None)
            known.discard(key)
            return
        known.add(key)
        try:
            data: dict[str, Any] = orjson.loads(value)
            kind = CallbackKind(data["kind"])
            status = str(data["status"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            logger.warning("reconcile: unreadable state record %s: %s", key, exc)
            return
        if kind not in _FINAL or status in _FINAL[kind]:
            stuck.pop(key, None)
            return
        stuck[key] = Stuck(
            kind=kind,
            sid=str(data["sid"]),
            status=status,
            changed_at=float(data["received_at"]),
            tags=dict(data.get("tags") or {}),
            number=data.get("number"),
            checked_at=self.checks.get(partition, {}).get(key, 0.0),
        )

    def apply_check(self, partition: int, key: str, value: bytes | None) -> None:
        """One record of `reconcile.checks` (None: a tombstone)."""
        checks = self.checks.setdefault(partition, {})
        if value is None:
            checks.pop(key, None)
            return
        try:
            checked_at = float(orjson.loads(value)["checked_at"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            logger.warning("reconcile: unreadable check record %s: %s", key, exc)
            return
        checks[key] = checked_at
        stuck = self.stuck.get(partition, {}).get(key)
        if stuck is not None:
            stuck.checked_at = checked_at

    def checked(self, partition: int, key: str, at: float) -> None:
        self.checks.setdefault(partition, {})[key] = at
        stuck = self.stuck.get(partition, {}).get(key)
        if stuck is not None:
            stuck.checked_at = at

    def stale_checks(self) -> list[tuple[int, str]]:
        """Checks of SIDs no longer stuck (final, forgotten): to tombstone, so that the
        checks topic stays as small as the stuck SIDs."""
        stale: list[tuple[int, str]] = []
        for partition, checks in self.checks.items():
            stuck = self.stuck.get(partition, {})
            stale.extend((partition, key) for key in checks if key not in stuck)
        return stale

    def forget_check(self, partition: int, key: str) -> None:
        self.checks.get(partition, {}).pop(key, None)

    def is_known(self, kind: CallbackKind, sid: str) -> bool:
        key = f"{'m' if kind in MESSAGE_KINDS else 'c'}:{sid}"
        return any(key in keys for keys in self.known.values())

    def numbers(self, campaign: str) -> set[str]:
        """Our numbers that a campaign's stuck SIDs were sent from."""
        return {
            s.number
            for stuck in self.stuck.values()
            for s in stuck.values()
            if s.number and s.campaign == campaign
        }

    def due(
        self,
        settings: Settings,
        now: float,
        *,
        since: float | None = None,
        campaign: str | None = None,
    ) -> list[Candidate]:
        """The stuck SIDs to fetch now, oldest change first. `since`: only those whose
        last change is at or after it (a command line's `--since`)."""
        found = []
        for partition, stuck in self.stuck.items():
            checks = self.checks.get(partition, {})
            for key, s in stuck.items():
                after = (
                    settings.reconcile_sms_after_s
                    if s.kind in MESSAGE_KINDS
                    else settings.reconcile_call_after_s
                )
                age = now - s.changed_at
                if age < after or age >= settings.reconcile_give_up_s:
                    continue
                # the checks too: a fetch recorded while its state record was replaced
                checked_at = max(s.checked_at, checks.get(key, 0.0))
                if now - checked_at < settings.reconcile_refetch_s:
                    continue
                if since is not None and s.changed_at < since:
                    continue
                if campaign is not None and s.campaign != campaign:
                    continue
                found.append(Candidate(partition, key, s))
        found.sort(key=lambda c: c.stuck.changed_at)
        return found

    def __len__(self) -> int:
        return sum(len(s) for s in self.stuck.values())
