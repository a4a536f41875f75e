"""The record on `processors.transitions`: what one intake batch counts, for one partition.

The intake reads callbacks partitioned by SID; a scope's windows need the callbacks
of every SID partition. So the intake sends the window increments of its batch's
transitions to the partition of each scope (a stable hash of the scope key, which
the window table's changelog shares): one record per target partition per batch,
not one per callback, because faust's per-record cost is high.

Value (JSON, `v` 1):

    {"v": 1,
     "scopes": {"delivery|campaign:spring-sale":             # family | scope_key
                  {"sms/0": [[bucket_start, latest_event_time, {"sent": 1, "pending": 1},
                              [raw offsets, ascending]], ...]}},
     "tick": null}

Per scope, per raw source partition ("<kind>/<partition>"), entries of identical
increments in one bucket, each with the raw offsets of the transitions that made it
(an entry counts once per offset); the offsets let the window agent skip increments
it has applied before.
A record with `"tick": <epoch seconds>` and no scopes is the publishing clock: the
worker owning the partition sends it to itself every `metrics_interval_s`, and the
agent then publishes the windows that changed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from processors.state import Family
from processors.windows import Entry

VERSION = 1


@dataclass(slots=True)
class TransitionBatch:
    scopes: dict[str, dict[str, list[Entry]]] = field(default_factory=dict)
    tick: float | None = None
    _entries: dict[tuple[str, str, int, tuple[Any, ...]], Entry] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add(
        self,
        key: str,
        source: str,
        bucket: int,
        at: float,
        deltas: dict[str, float],
        offset: int,
        same: tuple[Any, ...] | None = None,
    ) -> None:
        """Count one transition (offsets ascending per source). `same`: what makes two
        increments identical, `tuple(deltas.items())` unless the caller has it already."""
        found = (key, source, bucket, same or tuple(deltas.items()))
        entry = self._entries.get(found)
        if entry is None:
            entry = self._entries[found] = [bucket, at, deltas, []]
            self.scopes.setdefault(key, {}).setdefault(source, []).append(entry)
        elif at > entry[1]:
            entry[1] = at
        entry[3].append(offset)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": VERSION, "scopes": self.scopes, "tick": self.tick})

    @classmethod
    def from_bytes(cls, raw: bytes) -> TransitionBatch:
        data: dict[str, Any] = orjson.loads(raw)
        if data.get("v") != VERSION:
            raise ValueError(f"unsupported transitions record version {data.get('v')!r}")
        return cls(scopes=data["scopes"], tick=data.get("tick"))


def table_key(family: Family, scope: str) -> str:
    return f"{family.value}|{scope}"


def split_key(key: str) -> tuple[Family, str]:
    family, _, scope = key.partition("|")
    return Family(family), scope


@lru_cache(maxsize=65536)
def scope_partition(key: str, partitions: int) -> int:
    """The partition of a scope's increments and of its window state (stable across runs)."""
    return zlib.crc32(key.encode()) % partitions
