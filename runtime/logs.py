"""Logging for every stage: one line per event, greppable by SID."""

from __future__ import annotations

import logging
import os
import time

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def configure(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter(FORMAT))
    logging.basicConfig(
        level=(level or os.environ.get("SWITCHBOARD_LOG_LEVEL", "INFO")).upper(),
        handlers=[handler],
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


class _Formatter(logging.Formatter):
    """The standard format, with the date and time formatted once a second rather than
    once a line (the edge logs a line per callback)."""

    _last: tuple[int, str] = (-1, "")  # one tuple, so threads never see half an update

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached, text = self._last
        if second != cached:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._last = (second, text)
        return f"{text},{int(record.msecs):03d}"
