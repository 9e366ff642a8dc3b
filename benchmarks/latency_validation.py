"""Measure a latency table on this machine, then check it against whole per-frame graphs.

One command reproduces one result file: it profiles the preset into ``latency_models/NAME.yaml``
(``prunesearch profile``), validates it on a sample of students plus the teacher
(``prunesearch latency validate``), and writes ``benchmarks/results/latency_validation_NAME.md``.
Goal on a CPU: at least 95% of models within 10% of the table's estimate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prunesearch.latency import load_table
from prunesearch.latency.profiler import ProfileRequest, profile
from prunesearch.latency.backends import RuntimeSettings
from prunesearch.latency.runtime import TimingPlan
from prunesearch.latency.validate import validate
from prunesearch.models.vit_tracker import get_preset

from latency_report import markdown_table, write_result


def log(stage: str, done: int, total: int) -> None:
    if done == total:
        print(f"  {stage}: {done}/{total}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--name", required=True, help="table name: latency_models/NAME.yaml")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--profile-rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=15, help="validation timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-profile", action="store_true", help="validate the existing latency_models/NAME.yaml")
    args = parser.parse_args()

    path = Path("latency_models") / f"{args.name}.yaml"
    profile_s = None
    if not args.skip_profile:
        print(f"profiling {args.preset} into {path}", flush=True)
        request = ProfileRequest(args.name, get_preset(args.preset), RuntimeSettings(threads=args.threads),
                                 TimingPlan(rounds=args.profile_rounds, clock=args.clock), preset=args.preset)
        start = time.perf_counter()
        profile(request, log).save(path)
        profile_s = time.perf_counter() - start
    table = load_table(path)
    print(f"validating {path}", flush=True)
    report = validate(table, args.samples, args.seed, args.rounds, progress=log)
    s = report.summary
    goal = "met" if s["within_10pct"] >= 0.95 else "NOT met"
    rows = [[r.name, f"{r.estimate_ms:.3f}", f"{r.measured_ms:.3f}", f"{r.measured_p90_ms:.3f}", r.runs,
             f"{100 * r.error:+.1f}"] for r in report.rows]
    entries = [[e.kind, f"{e.ms:.4f}", f"{e.stats['p90']:.4f}", e.stats["runs"]] for e in table.entries]
    body = [
        f"Table `{path}` (sha256 {table.sha256[:12]}): preset {table.provenance.get('preset')}, "
        f"{table.meta['provider']}, {table.meta['threads']} threads, clock {table.meta.get('clock')}, "
        f"measured {table.meta['date']}" + (f" in {profile_s:.0f} s" if profile_s else "") + ".",
        "",
        *markdown_table(["part", "ms (p50)", "p90", "runs"], entries),
        "",
        f"Validation: {len(report.rows)} whole per-frame graphs ({args.samples} students drawn with seed {args.seed}, "
        f"plus the teacher), {args.rounds} interleaved rounds, {report.seconds:.0f} s.",
        "",
        *markdown_table(["share within 5%", "share within 10%", "MAPE %", "max abs error %", "Kendall tau", "goal (>= 95% within 10%)"],
                        [[f"{100 * s['within_5pct']:.0f}%", f"{100 * s['within_10pct']:.0f}%", f"{s['mape_pct']:.2f}",
                          f"{s['max_abs_error_pct']:.2f}", f"{s['kendall_tau']:.3f}", goal]]),
        "",
        *markdown_table(["model", "estimate ms", "measured ms (p50)", "measured p90", "runs", "error %"], rows),
    ]
    print(write_result(f"latency_validation_{args.name}", f"Latency table validation: {args.name}", body))


if __name__ == "__main__":
    main()
