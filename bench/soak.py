"""A bounded soak: the whole pipeline at a steady rate for a long time, by hand, not in CI.

    python -m bench.soak --minutes 30 --rate 1000     # the recorded run
    python -m bench.soak --minutes 2 --rate 300       # a quick check that it works

It is the pipeline benchmark's steady part run long on one pipeline (the same stage
processes from start to end), in slices: each slice reports the sustained rate, row
and alert latency, and the RSS of every stage, so a leak or a slow drift shows as a
trend across slices rather than vanishing into one median.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import fmt, machine_info, start_broker, write_results
from bench.pipeline import Options, measure_steady, pipeline_settings, start_pipeline, warm_up

logger = logging.getLogger("bench.soak")

STAGES = ("edge", "processors", "sink", "broker")
# the processors' gauges reported per slice (Pipeline.process_gauges names) and their columns
GAUGES = {
    "switchboard_process_sid_states_final_yes": "final SID states",
    "switchboard_process_sid_states_final_no": "other SID states",
    "switchboard_process_window_scopes": "window scopes",
}


def render(slices: list[dict[str, Any]], opts: argparse.Namespace) -> str:
    lines = [
        "## Soak",
        "",
        f"{opts.minutes:g} minutes at {opts.rate:g} callbacks/s, in slices of "
        f"{opts.slice:g} minutes, on one broker and one set of stage processes (the "
        "RSS columns are the same processes all along); each slice its own campaigns. "
        f"SWITCHBOARD_FINAL_STATE_TTL_S={opts.final_state_ttl} (default 3600), so that "
        "the processors' per-SID state reaches its plateau within the soak: it holds the "
        "SIDs of the last TTL, then forgets as many as it learns.",
        "",
        "| slice | sustained/s | row p99 ms | alert p99 ms | "
        + " | ".join(f"{s} RSS MB" for s in STAGES)
        + " | "
        + " | ".join(GAUGES.values())
        + " |",
        "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in (*STAGES, *GAUGES)) + " |",
    ]
    if slices:
        rss = " | ".join(fmt(slices[0].get(f"{st}_rss_mb_start")) for st in STAGES)
        lines.append(f"| start | | | | {rss} |{' |' * len(GAUGES)}")
    for i, s in enumerate(slices, 1):
        rss = " | ".join(fmt(s.get(f"{st}_rss_mb_end")) for st in STAGES)
        held = " | ".join(fmt(s.get(g)) for g in GAUGES)
        lines.append(
            f"| {i} | {fmt(s['sustained_per_s'])} | {fmt(s['row_p99_ms'])} | "
            f"{fmt(s['alert_p99_ms'])} | {rss} | {held} |"
        )
    lines += [
        "",
        "The last columns are the processors' gauges at the end of each slice: per-SID "
        "states in a final status (forgotten after the final-state TTL) and not (forgotten "
        "after SWITCHBOARD_STATE_TTL_S, 2 days: a message at `sent` may still get its "
        "receipt), and scopes in the window table. An alert p99 of n/a: no count alert "
        "of the slice could be timed, because each scope alerts once per alert window "
        "(15 min), and the account and number scopes the slices share alerted earlier.",
        "",
        "Every argument of this run: "
        f"`python -m bench.soak --minutes {opts.minutes:g} --rate {opts.rate:g} "
        f"--slice {opts.slice:g} --final-state-ttl {opts.final_state_ttl}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30, help="total length of the soak")
    p.add_argument("--rate", type=float, default=1_000, help="callbacks/s")
    p.add_argument("--slice", type=float, default=5, help="minutes per reported slice")
    p.add_argument("--log-level", default="WARNING", help="SWITCHBOARD_LOG_LEVEL of the stages")
    p.add_argument(
        "--final-state-ttl",
        type=int,
        default=300,
        help="SWITCHBOARD_FINAL_STATE_TTL_S of the processors (default 1 h): shorter, so "
        "that a half-hour soak reaches the plateau of per-SID state",
    )
    opts = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    broker = start_broker(workdir)
    slices: list[dict[str, Any]] = []
    run = Options(
        rate=opts.rate,
        duration_s=60 * opts.slice,
        workdir=workdir,
        log_level=opts.log_level,
        runs=1,
    )
    try:
        warm_up(broker, run)
        settings = pipeline_settings(broker, run, final_state_ttl_s=opts.final_state_ttl)
        pipeline = start_pipeline(settings, run)
        try:
            deadline = time.monotonic() + 60 * opts.minutes
            while time.monotonic() < deadline:
                seed = len(slices) + 1
                slices.append(
                    measure_steady(broker, pipeline, settings, run, seed=seed, shared=seed > 1)
                    | pipeline.process_gauges()
                )
                logger.info(
                    "slice %d: %s",
                    len(slices),
                    {k: slices[-1][k] for k in ("sustained_per_s", "row_p99_ms")}
                    | {f"{st}_rss_mb": slices[-1].get(f"{st}_rss_mb_end") for st in STAGES},
                )
        finally:
            pipeline.stop()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures: dict[str, float] = {
        "slices": len(slices),
        "rate_per_s": opts.rate,
        "sustained_per_s_min": min(s["sustained_per_s"] for s in slices),
        "row_p99_ms_max": max(s["row_p99_ms"] or 0 for s in slices),
        "rss_growth_pct_max": max(s["rss_growth_pct_max"] or 0 for s in slices),
    }
    # the whole soak's growth per stage: first slice's start to last slice's end
    for stage in STAGES:
        first, last = slices[0].get(f"{stage}_rss_mb_start"), slices[-1].get(f"{stage}_rss_mb_end")
        if first and last:
            figures[f"{stage}_rss_growth_pct_soak"] = round(100 * (last - first) / first, 1)
    write_results("soak", figures, render(slices, opts), machine=machine_info(), config=vars(opts))


if __name__ == "__main__":
    main()
