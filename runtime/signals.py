"""How a stage process ends on a signal before it has anything to finish."""

import signal


def stop_cleanly_while_starting() -> None:
    """Until a stage installs its own graceful handler, SIGTERM ends it with exit 0.

    A stage that is still importing, waiting for Kafka or opening chDB has acknowledged
    nothing, so there is nothing to finish: a supervisor that stops it then must see a
    clean stop, not a death by signal. (SIGINT keeps Python's KeyboardInterrupt, which
    the interactive commands catch to print their summary.)
    """
    signal.signal(signal.SIGTERM, exit_cleanly)


def exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
