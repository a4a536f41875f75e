"""Helpers every benchmark shares: medians, the machine's details, results files and a
local broker.

A minimal subset, with the same names and signatures as the full module the
benchmarks engineer owns (which replaces this one on merge).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contract.settings import Settings
from switchboard.broker import LocalBroker, free_port, kafka_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line), 0)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def command_line() -> str:
    return "python -m " + " ".join(
        [_module_name(sys.argv[0]), *(shlex.quote(a) for a in sys.argv[1:])]
    )


def _module_name(argv0: str) -> str:
    path = Path(argv0).resolve()
    try:
        parts = path.relative_to(ROOT).with_suffix("").parts
    except ValueError:
        return argv0
    return ".".join(p for p in parts if p != "__main__")


def write_results(
    name: str,
    figures: Mapping[str, float | int | None],
    markdown: str,
    *,
    machine: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> Path:
    """`bench/results/<name>.json` (figure -> number, unit in the name, plus the machine,
    the command and the configuration) and `<name>.md`, its section of BENCHMARKS.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = dict(figures)
    data["machine"] = machine
    data["command"] = command_line()
    if config is not None:
        data["config"] = config
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return path


def fmt(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def start_broker(workdir: Path) -> LocalBroker:
    """A broker of our own on a free port, its data under `workdir`."""
    broker = LocalBroker(workdir / "kafka", port=free_port())
    broker.start()
    return broker


def bench_settings(bootstrap: str, workdir: Path, **overrides: Any) -> Settings:
    """Settings of one run: its own topic prefix, ClickHouse path and ports."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"b{tag}.",
        "data_dir": workdir / tag,
        "clickhouse_database": f"bench_{tag}",
        "ingest_port": free_port(),
        "api_port": free_port(),
        "process_web_port": free_port(),
        "api_token": "bench-token",
    }
    values["clickhouse_url"] = f"chdb://{(values['data_dir'] / 'clickhouse').resolve()}"
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
