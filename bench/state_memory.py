"""The processors' memory per open message: the per-SID states the intake holds.

A message at `sent` whose receipt never comes stays in the intake's `SidStore` until
`SWITCHBOARD_STATE_TTL_S`; this builds those states as the intake does (a real SMS
callback normalized, then `processors.state.step`) and reads the process's RSS before
and after, so the figure is what a worker's memory grows by per million of them.

    python -m bench.state_memory [--messages 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

from contract.envelope import Envelope, SignatureVerdict
from contract.kinds import CallbackKind
from contract.normalize import normalize
from processors.sidstore import SidStore
from processors.state import step

RESULTS = Path(__file__).parent / "results" / "state_memory.json"
PARTITIONS = 4


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_messages(n: int) -> SidStore:
    store = SidStore()
    for partition in range(PARTITIONS):
        store.load(partition, {})
    now = time.time()
    for i in range(n):
        sid = f"SM{i:032x}"
        envelope = Envelope(
            kind=CallbackKind.SMS,
            sid=sid,
            params={
                "MessageSid": sid,
                "MessageStatus": "sent",
                "AccountSid": "AC" + "0" * 32,
                "From": "+15550000001",
                "To": f"+1555{i % 10_000_000:07d}",
                "NumMedia": "0",
                "NumSegments": "1",
            },
            received_at=now,
            signature=SignatureVerdict.UNCHECKED,
            tags={"campaign": "spring-sale"},
        )
        transition = step(None, normalize(envelope))
        assert transition is not None
        store.put(i % PARTITIONS, transition.key, transition.state)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    gc.collect()
    before = rss_mb()
    store = open_messages(args.messages)
    gc.collect()
    after = rss_mb()
    result = {
        "open_messages": len(store),
        "rss_mb_before": round(before, 1),
        "rss_mb_after": round(after, 1),
        "mb_per_million_open_messages": round((after - before) * 1e6 / args.messages, 1),
        "bytes_per_open_message": round((after - before) * 2**20 / args.messages),
        "run_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": f"python -m bench.state_memory --messages {args.messages}",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
