"""Measure a latency table on this machine, then check it against whole per-frame graphs.

One command reproduces one result file: it profiles the preset into ``latency_models/NAME.yaml``
(``prunesearch profile``, any runtime: onnxruntime or torch), validates it on a sample of students
plus the teacher (``prunesearch latency validate``), and writes
``benchmarks/results/latency_validation_NAME.md`` with the raw and the calibrated sum of parts.
Goal: at least 95% of models within 10% of the table's estimate (on a GPU also Kendall tau >= 0.95).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prunesearch.errors import PrunesearchError
from prunesearch.latency import load_table
from prunesearch.latency.backends import TimingRuntime, add_runtime_arguments, runtime_from_args
from prunesearch.latency.profiler import ProfileRequest, profile
from prunesearch.latency.runtime import TimingPlan
from prunesearch.latency.validate import validate
from prunesearch.models.vit_tracker import get_preset

from latency_report import markdown_table, write_result


def log(stage: str, done: int, total: int) -> None:
    if done == total:
        print(f"  {stage}: {done}/{total}", flush=True)


def profile_and_validate(name: str, preset: str, runtime: TimingRuntime | None, profile_rounds: int, clock: str,
                         samples: int, rounds: int, seed: int) -> Path:
    """Profile (unless ``runtime`` is None: the existing table) and validate ``latency_models/NAME.yaml``; write the report."""
    path = Path("latency_models") / f"{name}.yaml"
    profile_s = None
    if runtime is not None:
        print(f"profiling {preset} into {path}", flush=True)
        request = ProfileRequest(name, get_preset(preset), runtime, TimingPlan(rounds=profile_rounds, clock=clock), preset=preset)
        start = time.perf_counter()
        profile(request, log).save(path)
        profile_s = time.perf_counter() - start
    table = load_table(path)
    print(f"validating {path}", flush=True)
    report = validate(table, samples, seed, rounds, progress=log)
    s, raw = report.summary, report.raw_summary
    goal = "met" if s["within_10pct"] >= 0.95 and s["kendall_tau"] >= 0.95 else "NOT met"
    rows = [[r.name, f"{r.estimate_ms:.3f}", f"{r.raw_estimate_ms:.3f}", f"{r.measured_ms:.3f}", f"{r.measured_p90_ms:.3f}", r.runs,
             f"{100 * r.error:+.1f}", f"{100 * r.raw_error:+.1f}"] for r in report.rows]
    entries = [[e.kind, f"{e.ms:.4f}", f"{e.stats['p90']:.4f}", f"{e.stats['p99']:.4f}", e.stats["runs"]] for e in table.entries]
    summary_rows = [[label, f"{100 * x['within_5pct']:.0f}%", f"{100 * x['within_10pct']:.0f}%", f"{x['mape_pct']:.2f}",
                     f"{x['max_abs_error_pct']:.2f}", f"{x['kendall_tau']:.3f}"]
                    for label, x in (("table (calibrated where it has a calibration)", s), ("raw sum of parts", raw))]
    cal = table.calibration
    cal_lines = [] if cal is None else [
        f"Calibration (fitted to {len(cal.graphs)} whole graphs timed with the parts): {cal.graph_ms:.4f} ms per graph + "
        f"{cal.block_scale:.3f} x blocks + {cal.other_scale:.3f} x rest; leave-one-out within 10%: {100 * cal.loo_within_10pct:.0f}%.",
        "",
    ]
    body = [
        f"Table `{path}` (sha256 {table.sha256[:12]}): preset {table.provenance.get('preset')}, {table.meta['runtime']} "
        f"{table.meta['provider']} {table.meta['precision']}, {table.meta.get('threads')} threads, clock {table.meta.get('clock')}, "
        f"device {table.meta['device']}, measured {table.meta['date']}" + (f" in {profile_s:.0f} s" if profile_s else "") + ".",
        "",
        *markdown_table(["part", "ms (p50)", "p90", "p99", "runs"], entries),
        "",
        *cal_lines,
        f"Validation: {len(report.rows)} whole per-frame graphs ({samples} students drawn with seed {seed}, "
        f"plus the teacher), {rounds} interleaved rounds, {report.seconds:.0f} s. "
        f"Goal (>= 95% within 10% and Kendall tau >= 0.95): {goal}.",
        "",
        *markdown_table(["prices", "share within 5%", "share within 10%", "MAPE %", "max abs error %", "Kendall tau"], summary_rows),
        "",
        *markdown_table(["model", "estimate ms", "raw sum ms", "measured ms (p50)", "measured p90", "runs", "error %", "raw error %"], rows),
    ]
    return write_result(f"latency_validation_{name}", f"Latency table validation: {name}", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--name", required=True, help="table name: latency_models/NAME.yaml")
    add_runtime_arguments(parser)
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--profile-rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=15, help="validation timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-profile", action="store_true", help="validate the existing latency_models/NAME.yaml")
    args = parser.parse_args()
    runtime = None if args.skip_profile else runtime_from_args(args)
    print(profile_and_validate(args.name, args.preset, runtime, args.profile_rounds, args.clock, args.samples, args.rounds, args.seed))


if __name__ == "__main__":
    try:
        main()
    except PrunesearchError as err:
        sys.exit(f"latency_validation: error: {err}")
