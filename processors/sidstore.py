"""The per-SID states of the raw partitions this worker owns, in memory, by partition.

The durable copy is the compacted `processors.sid-state` topic (one partition per raw
partition number); the intake rebuilds a partition from it when it is assigned.
"""

from __future__ import annotations

from collections.abc import Iterable

from processors.state import SidState, is_final


class SidStore:
    def __init__(self) -> None:
        self.partitions: dict[int, dict[str, SidState]] = {}

    def get(self, partition: int, key: str) -> SidState | None:
        return self.partitions[partition].get(key)

    def put(self, partition: int, key: str, state: SidState) -> None:
        self.partitions[partition][key] = state

    def load(self, partition: int, states: dict[str, SidState]) -> None:
        self.partitions[partition] = states

    def keep_only(self, partitions: Iterable[int]) -> None:
        wanted = set(partitions)
        for partition in [p for p in self.partitions if p not in wanted]:
            del self.partitions[partition]

    def expire(self, before: float, final_before: float) -> tuple[list[tuple[int, str]], int]:
        """Forget states last changed before `before`, or before `final_before` if in a
        final status; returns what was forgotten, and how many kept states are final."""
        gone: list[tuple[int, str]] = []
        final_kept = 0
        for partition, states in self.partitions.items():
            old = []
            for key, state in states.items():
                final = is_final(key, state)
                if state.received_at < (final_before if final else before):
                    old.append(key)
                else:
                    final_kept += final
            for key in old:
                del states[key]
            gone.extend((partition, key) for key in old)
        return gone, final_kept

    def __len__(self) -> int:
        return sum(len(states) for states in self.partitions.values())
