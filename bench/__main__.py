"""Run the benchmarks and render BENCHMARKS.md from their results.

    python -m bench all             # every bench/<name>.py with a main(), then render
    python -m bench NAME [ARGS...]  # one benchmark (ARGS go to it), then render
    python -m bench render          # only render BENCHMARKS.md from bench/results/*.md
    python -m bench list            # the benchmarks there are

Each benchmark runs in its own process (`python -m bench.NAME`): embedded ClickHouse
allows one path per process, and a crash in one must not take the others down.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, fmt, machine_info

BENCH = ROOT / "bench"
OUTPUT = ROOT / "BENCHMARKS.md"
# Sections in this order; benchmarks not listed follow alphabetically.
ORDER = ("ingest", "ingest_formats", "process", "sink", "pipeline")
NOT_BENCHMARKS = {"common", "__main__", "__init__"}
# Run by hand only (half an hour by default): `python -m bench soak`.
BY_HAND = {"soak"}
# The figures the summary shows first, with the bar each is held to.
HEADLINES: dict[str, list[tuple[str, str]]] = {
    "pipeline": [
        ("sustained_per_s", ">= 5,000"),
        ("row_p99_ms", "< 2,000"),
        ("alert_p99_ms", "< 2,000"),
        ("cost_ratio_1m_vs_10k", "<= 1.10"),
        ("rss_growth_pct_max", "flat"),
        ("baseline_ratio_10k", ">= 10"),
        ("baseline_ratio_50k", ">= 40"),
        ("baseline_ratio_badlist_10k", ">= 10"),
        ("baseline_ratio_badlist_50k", ">= 40"),
    ],
    "ingest": [
        ("durable_per_s_1w", ">= 10,000"),
        ("p99_ms_1w", "< 25"),
        ("durable_vs_bare_pct_1w", ">= 70"),
    ],
    "ingest_formats": [
        ("vs_compat_pct_signalwire_rest_1w", ">= 90"),
        ("vs_compat_pct_swml_1w", ">= 90"),
        ("vs_compat_pct_event_streams_1w", ">= 90"),
        ("vs_compat_pct_signalwire_rest_2w", ">= 90"),
        ("vs_compat_pct_swml_2w", ">= 90"),
        ("vs_compat_pct_event_streams_2w", ">= 90"),
    ],
    "process": [("events_per_s_1w", ">= 10,000")],
    "reconcile": [
        ("reconcile_s", ""),
        ("requests_per_s_held", "<= the setting"),
        ("requests_most_in_any_second", "<= the setting + 1"),
        ("processors_drop_pct", "<= 5"),
    ],
    "sink": [
        ("rows_per_s_default_batch", ">= 200,000"),
        ("insert_rows_per_s_default_batch", ""),
    ],
    "soak": [
        ("sustained_per_s_min", ""),
        ("row_p99_ms_max", ""),
        ("edge_rss_growth_pct_soak", "flat"),
        ("processors_rss_growth_pct_soak", "flat"),
        ("sink_rss_growth_pct_soak", "flat"),
    ],
}
REPRODUCE = """\
## Reproduce

Run on a quiet machine: every benchmark shares it with the pipeline it measures.

| what | command | takes about |
|---|---|---|
| everything, then this page | `make bench` (the `bench` extra, then `python -m bench all`) \
| 45 min |
| the whole pipeline, all parts (after 20 s of warm-up) | `python -m bench pipeline` \
| 35 min |
| growth at 10k, 100k and 1M callbacks (merged into pipeline.json) | \
`python -m bench pipeline --parts growth` | 10 min |
| steady load only | `python -m bench pipeline --parts steady --rate 5000 --duration 60` | 5 min |
| the seed baseline only | `python -m bench pipeline --parts baseline` | 15 min |
| ground truth vs `switchboard report` at 100k | \
`python -m bench pipeline --parts verify --verify-callbacks 100000` | 3 min |
| a smoke run of every part at tiny sizes | `python -m bench pipeline --smoke` | 2 min |
| reconcile: 10,000 stuck messages at 100 requests/s, the processors beside it \
| `python -m bench reconcile` | 5 min |
| the soak: 30 minutes at 1,000/s on one pipeline, RSS and latency per 5-minute slice \
| `python -m bench soak --minutes 30 --rate 1000` | 30 min |
| the edge in every provider format (same-run ratios to the form) | \
`python -m bench.ingest --formats` | 5 min |
| re-render this page | `python -m bench render` | |
"""
_HAS_MAIN = re.compile(r"^def main\(", re.MULTILINE)


def benchmarks() -> list[str]:
    found = {
        path.stem
        for path in BENCH.glob("*.py")
        if path.stem not in NOT_BENCHMARKS and _HAS_MAIN.search(path.read_text())
    }
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def run(name: str, args: list[str]) -> int:
    print(f"== bench {name} {' '.join(args)}", flush=True)
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT)
    print(f"== bench {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return code


def _results() -> dict[str, dict[str, Any]]:
    results = {}
    for path in sorted(RESULTS.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError:
            results[path.stem] = {}
    return results


def _ordered(names: list[str]) -> list[str]:
    return [n for n in ORDER if n in names] + sorted(set(names) - set(ORDER))


def render() -> Path:
    results = _results()
    sections = {p.stem: p.read_text().strip() for p in RESULTS.glob("*.md")}
    here = machine_info()
    lines = [
        "# Benchmarks",
        "",
        "Rendered by `python -m bench render` from `bench/results/` (each benchmark writes",
        "`<name>.json`, figure name to number with the unit in the name, and `<name>.md`).",
        "Reproduce everything with `make bench` (`python -m bench all`), or one benchmark",
        "with `python -m bench NAME` (arguments go to it; `--help` lists them). Figures are",
        "medians of several runs; baselines are measured in the same run as what they are",
        "compared with.",
        "",
        "## Machine",
        "",
        "`cpu_reference_ms_at_start` times a fixed pure-Python loop when each benchmark",
        "started (lower is faster): this shared host's speed drifts within a day, so",
        "figures of runs apart compare only as far as it does.",
        "",
        "| | " + " | ".join(["this render", *_ordered(list(results))]) + " |",
        "|---|" + "---|" * (len(results) + 1),
    ]
    for key in here:
        cells = [str(here[key])] + [
            str(results[n].get("machine", {}).get(key, "")) for n in _ordered(list(results))
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", REPRODUCE, "## Summary", ""]
    if not results:
        lines.append("No results yet: run `make bench` (see above).")
    else:
        lines += ["| benchmark | figure | value | bar |", "|---|---|---|---|"]
    for name in _ordered(list(results)):
        data = results[name]
        shown = (
            HEADLINES.get(name)
            or [(k, "") for k, v in data.items() if isinstance(v, int | float)][:8]
        )
        for key, bar in shown:
            value = data.get(key)
            digits = 0 if isinstance(value, float) and abs(value) >= 100 else 2
            lines.append(f"| {name} | `{key}` | {fmt(value, digits)} | {bar} |")
    for name in _ordered(list(sections)):
        data = results.get(name, {})
        lines += ["", sections[name], ""]
        if data.get("command"):
            when = datetime.fromtimestamp((RESULTS / f"{name}.json").stat().st_mtime, UTC)
            lines.append(f"Command: `{data['command']}` (run {when:%Y-%m-%d %H:%M} UTC).")
    OUTPUT.write_text("\n".join(lines).rstrip() + "\n")
    return OUTPUT


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "list":
        print("\n".join(benchmarks()))
        return 0
    if command == "render":
        print(f"wrote {render()}")
        return 0
    if command == "all":
        failed = [name for name in benchmarks() if name not in BY_HAND and run(name, rest) != 0]
    elif command in benchmarks():
        failed = [command] if run(command, rest) != 0 else []
    else:
        print(f"no benchmark {command!r}; there are: {', '.join(benchmarks())}", file=sys.stderr)
        return 2
    if not {"-h", "--help"} & set(rest):  # a benchmark's help measured nothing
        print(f"wrote {render()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
