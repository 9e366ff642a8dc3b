"""Leave-one-out table of every shipped derived latency table (no timing: read from the files).

Each derived table was fitted to published end-to-end fps; for each published variant the file
records the fit residual and the error when that variant is left out of the fit and predicted.
"""

from __future__ import annotations

import argparse

from prunesearch.latency import load_table
from prunesearch.latency.derive import TARGETS, derive, recorded_figures

from latency_report import markdown_table, write_result


def tie_comparison(tie_name: str) -> list[str]:
    """Refit every target with the part ratios of a measured table instead of FLOPs; compare LOO errors."""
    tie = load_table(tie_name)
    published = recorded_figures([load_table(t) for t in TARGETS])
    rows = []
    for target in TARGETS:
        flops, measured = derive(published, target), derive(published, target, tie)
        teacher = [r["loo_error_pct"] for r in measured.provenance["variants"] if r["role"] == "teacher"]
        flops_teacher = [r["loo_error_pct"] for r in flops.provenance["variants"] if r["role"] == "teacher"]
        rows.append([target, f"{flops.provenance['students_max_abs_loo_error_pct']:.2f}",
                     f"{measured.provenance['students_max_abs_loo_error_pct']:.2f}",
                     ", ".join(f"{x:+.2f}" for x in flops_teacher), ", ".join(f"{x:+.2f}" for x in teacher)])
    return [
        f"Tie comparison: the same fits with the part ratios of the measured table `{tie_name}` "
        f"(sha256 {tie.sha256[:12]}) instead of MAC counts.",
        "",
        *markdown_table(["target", "max abs LOO students %, FLOPs tie", f"same, tie {tie_name}",
                         "teacher LOO %, FLOPs tie", f"teacher LOO %, tie {tie_name}"], rows),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tie", default=None, help="also refit with the part ratios of this measured ViT-B table")
    args = parser.parse_args()
    rows, summary = [], []
    for target in TARGETS:
        table = load_table(target)
        prov = table.provenance
        for r in prov["variants"]:
            rows.append([target, r["name"], r["role"], f"{r['published_fps']:.2f}", f"{r['published_ms']:.2f}",
                         f"{r['fitted_ms']:.2f}", f"{r['residual_pct']:+.2f}", f"{r['loo_ms']:.2f}", f"{r['loo_error_pct']:+.2f}"])
        summary.append([target, prov["source"]["column"], f"{prov['fit']['fixed_ms']:.3f}", f"{prov['fit']['scale']:.4f}",
                        f"{prov['fit']['joint_scale']:.4f}", f"{prov['students_max_abs_loo_error_pct']:.2f}",
                        f"{prov['max_abs_loo_error_pct']:.2f}", "yes" if prov["loo_within_10pct"] else "no",
                        f"{table.estimate(4, 2).fps:.2f}"])
    body = [
        "Tie: the part kinds' relative costs are their MAC counts (prunesearch.flops.part_macs); fitted per target:",
        "a fixed per-frame cost and a scale (ms per GMAC) from the four LiteTrack students by non-negative least",
        "squares, and a joint-block scale from the OSTrack-256-CE row (its candidate elimination modelled as",
        "fewer search tokens after blocks 3, 6, 9). The teacher's leave-one-out prediction uses the students' scale.",
        "",
        *markdown_table(["target", "column", "fixed ms", "scale", "joint scale", "max abs LOO students %",
                         "max abs LOO all %", "all within 10%", "B4-2 fps"], summary),
        "",
        *(tie_comparison(args.tie) if args.tie else []),
        *markdown_table(["target", "variant", "role", "published fps", "published ms", "fitted ms", "residual %",
                         "leave-one-out ms", "leave-one-out error %"], rows),
    ]
    print(write_result("latency_loo", "Derived latency tables: fit residuals and leave-one-out errors", body, timed=False))


if __name__ == "__main__":
    main()
