"""Logging for every stage: one line per event, greppable by SID."""

from __future__ import annotations

import logging
import os


def configure(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("SWITCHBOARD_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s",
        force=True,
    )
    # The edge logs a line per callback: skip gathering what the format above never shows
    # (the logging HOWTO's "Optimization" advice; about a third of a record's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    # librdkafka and aiokafka are chatty at INFO about routine reconnects
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("faust").setLevel(logging.WARNING)
    logging.getLogger("mode").setLevel(logging.WARNING)
