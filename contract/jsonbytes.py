"""JSON for records that stay in memory: orjson's output, in a bytes object of its size.

orjson (3.12 and later) returns its output in a 4 KiB buffer, whatever the length: a
190-byte per-SID state record held until Kafka acknowledges it cost 4,097 bytes, and
100,000 of them 412 MB of RSS instead of 24. Records that are only handed to a
producer (which copies them) and dropped can use `orjson.dumps` as they are.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any, option: int | None = None) -> bytes:
    """`orjson.dumps(value, option=option)`, copied into an exact-size object (0.2 µs
    more)."""
    return bytes(memoryview(orjson.dumps(value, option=option)))
