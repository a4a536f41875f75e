"""The `switchboard` command line and local orchestration of the stages."""

import signal


def stop_cleanly_while_starting() -> None:
    """Until a stage installs its own graceful handler, SIGTERM or SIGINT ends it with 0.

    A stage that is still importing, waiting for Kafka or opening chDB has acknowledged
    nothing, so there is nothing to finish: a supervisor that stops it then must see a
    clean stop, not a death by signal.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
