"""A consumer on the runtime in a child process, for the runtime's crash tests.

    python -m tests.runtime_child BOOTSTRAP TOPIC GROUP OUT_FILE INSTANCE

Its effect is a line per record appended to OUT_FILE (flushed and synced before the
write returns), then the batch's commit. `SWITCHBOARD_FAULT=child:after-write` kills it
between the two.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from confluent_kafka import Message

from contract.kafka import sink_consumer_config
from contract.settings import Settings
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Batching


class ValueSink:
    """Batches of record values; subclasses say where `write` puts them."""

    def new(self) -> list[bytes]:
        return []

    def add(self, batch: list[bytes], records: list[Message]) -> int:
        batch.extend(m.value() or b"" for m in records)
        return len(records)

    def write(self, batch: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileSink(ValueSink):
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, batch: list[bytes]) -> None:
        with self.path.open("ab") as out:
            out.write(b"".join(value + b"\n" for value in batch))
            out.flush()
            os.fsync(out.fileno())


def main() -> None:
    bootstrap, topic, group, out, instance = sys.argv[1:6]
    settings = Settings(_env_file=None, kafka_bootstrap=bootstrap, instance_id=instance)  # type: ignore[call-arg]
    runtime = ConsumerRuntime(
        settings,
        name="child",
        group=group,
        topics=[topic],
        config=sink_consumer_config(settings),
        strategy=lambda rt: Batching(rt, FileSink(Path(out)), max_rows=40, age_s=0.2),
    )
    signal.signal(signal.SIGTERM, lambda *_: runtime.stop())
    runtime.run()


if __name__ == "__main__":
    main()
