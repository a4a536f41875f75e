"""Fault injection for crash-recovery tests: `SWITCHBOARD_FAULT=<point>` makes the process
SIGKILL itself when it first reaches that point, say between a write and its commit.

Read once at import; unset (production), `reach` is one comparison.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

_POINT = os.environ.get("SWITCHBOARD_FAULT", "")


def reach(point: str) -> None:
    if _POINT and point == _POINT:
        logger.warning("fault injection: SIGKILL at %s", point)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
