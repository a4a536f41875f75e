"""Helpers every benchmark shares: medians, the machine's details, results files,
a local broker and the pipeline's stages as child processes, sampling a process's
CPU and RSS through /proc, and watching Kafka offsets to know when work has landed.

Other benchmarks may add helpers here by appending functions.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from contract.kafka import admin, ensure_topics
from contract.settings import Settings
from contract.topics import Topic, topic_name
from switchboard.broker import LocalBroker, free_port, kafka_version
from tests.harness import settings_env as _harness_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- figures -----------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def repeat(runs: int, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Runs `measure` `runs` times; the median of each figure (None where any run had none)."""
    samples = [measure() for _ in range(runs)]
    figures: dict[str, float] = {}
    for name in samples[0]:
        values = [s.get(name) for s in samples]
        numbers = [v for v in values if v is not None]
        figures[name] = median(numbers) if len(numbers) == len(values) else None  # type: ignore[assignment]
    return figures


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
        "cpu_reference_ms_at_start": cpu_reference_ms(),
    }


def cpu_reference_ms(rounds: int = 5) -> float:
    """Milliseconds of a fixed pure-Python loop, the median of `rounds`: how fast a core
    of this machine was when a benchmark started. A shared host's speed drifts by tens of
    percent within a day, so figures of runs apart compare only as far as this does."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


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


# --- processes ---------------------------------------------------------------------


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


def settings_env(settings: Settings, log_level: str = "INFO") -> dict[str, str]:
    """The environment that gives a `switchboard` child these settings."""
    return _harness_env(settings) | {"SWITCHBOARD_LOG_LEVEL": log_level}


class Child:
    """A child process in its own session, its output in a log file, stopped by its pid."""

    def __init__(
        self, name: str, argv: list[str], log: Path, *, quiet_stdout: bool = False, **popen: Any
    ) -> None:
        self.name = name
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL if quiet_stdout else out,
            stderr=out,
            start_new_session=True,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """Signal the child's process group (it may have workers), then wait, bounded."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def wait_until(
    check: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(200 <= response.status < 300)
    except OSError:
        return False


STAGES = ("sink", "process", "ingest")  # started in this order, stopped in reverse


@dataclass
class Pipeline:
    """The three stages as `switchboard <stage>` children against one broker."""

    settings: Settings
    logs: Path
    log_level: str = "INFO"
    children: dict[str, Child] = field(default_factory=dict)
    process_metrics_port: int = field(default_factory=free_port)

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ingest_port}"

    def start(self, timeout_s: float = 120.0) -> Pipeline:
        ensure_topics(self.settings)
        env = settings_env(self.settings, self.log_level)
        metrics = ["--metrics-port", str(self.process_metrics_port)]
        for stage in STAGES:
            self.children[stage] = Child(
                stage,
                [
                    sys.executable,
                    "-m",
                    "switchboard",
                    stage,
                    *(metrics if stage == "process" else []),
                ],
                self.logs / f"{stage}.log",
                env=env,
                cwd=ROOT,
            )
        api = f"http://127.0.0.1:{self.settings.api_port}/healthz"
        for url in (api, f"{self.edge_url}/healthz"):  # (each wait ends before the next url)
            wait_until(lambda: http_ok(url) or self._dead(), timeout_s=timeout_s, what=url)  # noqa: B023
            self._dead()
        return self

    def _dead(self) -> bool:
        for name, child in self.children.items():
            if not child.alive():
                raise RuntimeError(f"{name} exited early:\n{child.log()}")
        return False

    def process_gauges(self) -> dict[str, float]:
        """The processors' gauges (`switchboard_process_*`, by label values), from their
        /metrics: what their memory is proportional to."""
        url = f"http://127.0.0.1:{self.process_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        found = {}
        for family in text_string_to_metric_families(text):
            if family.type == "gauge" and family.name.startswith("switchboard_process_"):
                for sample in family.samples:
                    labels = "_".join(f"{k}_{v}" for k, v in sorted(sample.labels.items()))
                    found["_".join(filter(None, (sample.name, labels)))] = sample.value
        return found

    def pids(self) -> dict[str, int]:
        names = {"ingest": "edge", "process": "processors", "sink": "sink"}
        return {names[n]: c.pid for n, c in self.children.items()}

    def stop(self) -> None:
        for stage in reversed(STAGES):
            if stage in self.children:
                self.children[stage].stop()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- CPU and RSS of a process over time --------------------------------------------


def proc_sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used, RSS bytes) of `pid` from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return cpu_s, int(statm.split()[1]) * PAGE_SIZE


class Sampler:
    """Samples CPU and RSS of named pids every `interval_s`, in a thread."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.series: dict[str, list[tuple[float, float, int]]] = {n: [] for n in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            for name, pid in self.pids.items():
                sample = proc_sample(pid)
                if sample is not None:
                    self.series[name].append((now, *sample))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for name, pid in self.pids.items():  # a last sample at the very end
            sample = proc_sample(pid)
            if sample is not None:
                self.series[name].append((time.monotonic(), *sample))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per process: mean CPU %, CPU seconds, RSS at start and end (MB), and RSS growth
        in % from the first tenth of the run to the last tenth (medians of each)."""
        out: dict[str, dict[str, float]] = {}
        for name, samples in self.series.items():
            if len(samples) < 2:
                continue
            (t0, c0, _), (t1, c1, _) = samples[0], samples[-1]
            tenth = max(1, len(samples) // 10)
            rss_start = median(s[2] for s in samples[:tenth])
            rss_end = median(s[2] for s in samples[-tenth:])
            out[name] = {
                "cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1) if t1 > t0 else 0.0,
                "cpu_s": round(c1 - c0, 2),
                "rss_mb_start": round(rss_start / 2**20, 1),
                "rss_mb_end": round(rss_end / 2**20, 1),
                "rss_mb_max": round(max(s[2] for s in samples) / 2**20, 1),
                "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1),
            }
        return out


class Profiler:
    """py-spy attached to named Python processes (and their children) while the block
    runs, without pausing them; `top()` is each one's hottest functions by own samples.

    py-spy needs ptrace permission over the target (same user, and a Yama ptrace_scope
    that allows it); where it cannot attach, the stage gets no profile and a log line."""

    def __init__(self, pids: Mapping[str, int], workdir: Path, rate_hz: int = 100) -> None:
        self.pids = dict(pids)
        self.workdir = workdir
        self.rate_hz = rate_hz
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def _out(self, name: str) -> Path:
        return self.workdir / f"profile-{name.replace(' ', '_')}.txt"

    def __enter__(self) -> Profiler:
        spy = Path(sys.executable).with_name("py-spy")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            argv = [str(spy), "record", "--pid", str(pid), "--format", "raw"]
            argv += ["--rate", str(self.rate_hz), "--nonblocking", "--subprocesses"]
            argv += ["--output", str(self._out(name))]
            self.children[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children.values():
            child.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for name, child in self.children.items():
            try:
                _, err = child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                _, err = child.communicate()
            if not self._out(name).exists():
                print(f"py-spy got no profile of {name}: {err.decode()[-300:]}", file=sys.stderr)

    def top(self, n: int = 20) -> dict[str, list[tuple[str, float]]]:
        """Per process: the `n` functions with the most own (leaf) samples, in % of all."""
        out: dict[str, list[tuple[str, float]]] = {}
        for name in self.pids:
            path = self._out(name)
            if not path.exists():
                continue
            own: dict[str, int] = {}
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                leaf = stack.rsplit(";", 1)[-1]
                own[leaf] = own.get(leaf, 0) + int(count)
            total = sum(own.values()) or 1
            ranked = sorted(own.items(), key=lambda kv: -kv[1])[:n]
            out[name] = [(frame, round(100 * c / total, 1)) for frame, c in ranked]
        return out


# --- Kafka offsets: has the work landed? ---------------------------------------------


class Offsets:
    """End offsets of topics and committed offsets of consumer groups, via the admin API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = admin(settings)
        self._partitions: dict[str, list[int]] = {}

    def name(self, topic: Topic) -> str:
        return topic_name(topic, self.settings.topic_prefix)

    def partitions(self, topic: Topic) -> list[int]:
        name = self.name(topic)
        if name not in self._partitions:
            md = self.admin.list_topics(name, timeout=10)
            self._partitions[name] = sorted(md.topics[name].partitions)
        return self._partitions[name]

    def ends(self, topics: Iterable[Topic]) -> dict[tuple[str, int], int]:
        request = {
            TopicPartition(self.name(t), p): OffsetSpec.latest()
            for t in topics
            for p in self.partitions(t)
        }
        futures = self.admin.list_offsets(request, request_timeout=10)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def committed(self, group: str, topic: Topic) -> dict[tuple[str, int], int]:
        tps = [TopicPartition(self.name(topic), p) for p in self.partitions(topic)]
        futures = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)], request_timeout=10
        )
        result = futures[group].result()
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in result.topic_partitions}


RAW_TOPICS = (
    Topic.CALLBACKS_SMS,
    Topic.CALLBACKS_VOICE,
    Topic.CALLBACKS_RECORDING,
    Topic.CALLBACKS_TRANSCRIPTION,
    Topic.CALLBACKS_INBOUND_CALL,
)


def sink_events_group(settings: Settings) -> str:
    """The consumer group of the sink's events writer (see sinks/service.py)."""
    return f"{settings.topic_prefix}switchboard-sink-events"


def landed(offsets: Offsets) -> bool:
    """Every raw callback became an event (or a dead letter), and the sink committed every
    event, which it does only after ClickHouse took the rows: all is queryable."""
    raw = sum(offsets.ends(RAW_TOPICS).values())
    events = offsets.ends([Topic.EVENTS])
    dead = sum(offsets.ends([Topic.CALLBACKS_DEAD_LETTER]).values())
    if sum(events.values()) + dead < raw:
        return False
    committed = offsets.committed(sink_events_group(offsets.settings), Topic.EVENTS)
    return all(committed.get(tp, 0) >= end for tp, end in events.items())
