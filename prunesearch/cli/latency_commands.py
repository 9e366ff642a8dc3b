"""``prunesearch latency list|show|validate|derive`` and ``prunesearch profile``: latency tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prunesearch.cli import args as argtypes
from prunesearch.latency.backends import add_runtime_arguments
from prunesearch.latency.derive import PUBLISHED_FORMAT
from prunesearch.models.phases import TEMPLATE_UPDATE_MAX
from prunesearch.models.vit_tracker import DEFAULT_PRESET, PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    lat = sub.add_parser("latency", help="latency tables: list, show, validate, derive")
    lsub = lat.add_subparsers(dest="latency_command", metavar="SUBCOMMAND", required=True)

    p = lsub.add_parser("list", help="the known targets (local ./latency_models and shipped tables)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = lsub.add_parser("show", help="price every candidate of a space on one target")
    p.add_argument("--target", required=True, help="a target name (see 'prunesearch latency list') or a table .yaml")
    p.add_argument("--space", default=None, help="space name or file (litetrack, spaces/litetrack.yaml: the shipped one when the folder has none); "
                   "default: depth 1..teacher, M 1..depth")
    p.add_argument("--template-update", type=argtypes.whole(1, TEMPLATE_UPDATE_MAX), default=None, metavar="K",
                   help="the template is re-encoded every K frames: amortise its cost over K frames")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_show)

    p = lsub.add_parser("validate", help="time whole per-frame graphs here and compare with a measured table")
    p.add_argument("--target", required=True, help="a table measured on this machine (name or .yaml)")
    p.add_argument("--samples", type=argtypes.whole(1, 1000), default=12, help="students drawn from the default space (the teacher is added)")
    p.add_argument("--rounds", type=argtypes.whole(1, 10000), default=15, help="interleaved timing rounds")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the candidate sample")
    p.add_argument("--allow-other-machine", action="store_true", help="compare even if the table was measured elsewhere")
    p.add_argument("--mlflow", action="store_true", help="log the report as an MLflow run (MLFLOW_TRACKING_URI or MLflow's default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_validate)

    p = lsub.add_parser("derive", help="fit a table to whole-model figures: the published devices', or your own (--measured)")
    p.add_argument("--measured", default=None, metavar="FILE",
                   help="YAML of whole-model per-frame figures you measured on a device (device, runtime, precision, "
                   "statistic, unit, models: {B4-2: 8.1, teacher: 12.0}); needs --name")
    p.add_argument("--name", default=None, help="with --measured: the new target's name (writes OUT_DIR/NAME.yaml)")
    p.add_argument("--published", default=None,
                   help=f"a YAML file of published figures: {PUBLISHED_FORMAT}; default: the "
                   "LiteTrack paper's figures recorded in the shipped tables (no file needed)")
    p.add_argument("--target", action="append", default=None, help="target to derive (repeatable); default: all")
    p.add_argument("--tie", default="flops",
                   help="what fixes the part kinds' relative costs: 'flops' (default) or a measured ViT-B table")
    p.add_argument("--out-dir", type=argtypes.nonempty_path, default="latency_models", help="folder to write NAME.yaml into (default: ./latency_models)")
    p.add_argument("--json", action="store_true", help="print the fit report as JSON")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("profile", help="measure a latency table on this machine (onnxruntime or PyTorch, CPU or GPU)")
    p.add_argument("--name", required=True, help="target name; written to ./latency_models/NAME.yaml unless --out")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="architecture to measure")
    add_runtime_arguments(p)
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip timing whole graphs of the teacher and a few students to calibrate the sum of parts")
    p.add_argument("--rounds", type=argtypes.whole(1, 10000), default=30, help="interleaved timing rounds (more: steadier medians)")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall (default) or cpu: CPU time of one thread, for a busy shared machine (needs --threads 1)")
    p.add_argument("--chain", type=argtypes.whole(1, 1000), default=None,
                   help="distinct blocks per timed block graph (default: the teacher's depth, fewer for large blocks)")
    p.add_argument("--device", default=None, help="device description for the table (default: CPU model and cores)")
    p.add_argument("--power-mode", default=None, help="power mode to record (e.g. the Jetson nvpmodel mode)")
    p.add_argument("--out", type=argtypes.nonempty_path, default=None, help="output file (default: ./latency_models/NAME.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing table")
    p.set_defaults(func=cmd_profile)


def cmd_list(args: argparse.Namespace) -> int:
    from prunesearch.latency import known_targets, load_table

    rows = []
    for name in known_targets():
        t = load_table(name)
        rows.append({"target": name, "method": t.meta["method"], "device": t.meta["device"],
                     "runtime": f"{t.meta['runtime']} {t.meta['provider']}", "precision": t.meta["precision"],
                     "path": _shown_path(t.path)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_table("latency targets", rows)
    return 0


def _shown_path(path: Path | None) -> str:
    """Relative to the working directory when inside it."""
    if path is None:
        return "-"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _candidates(space: str | None, teacher_depth: int) -> list[tuple[int, int]]:
    if space is None:
        return [(n, m) for n in range(1, teacher_depth + 1) for m in range(1, n + 1)]
    from prunesearch.search.space import load_space

    return sorted({(c.depth, c.ai_layers) for c in load_space(space).candidates(teacher_depth)})


def cmd_show(args: argparse.Namespace) -> int:
    from prunesearch.latency import load_table

    table = load_table(args.target)
    teacher = table.estimate_teacher(args.template_update)
    ests = [table.estimate(n, m, args.template_update) for n, m in _candidates(args.space, table.teacher_depth)]
    if args.json:
        print(json.dumps({
            "target": table.name, "sha256": table.sha256, "meta": table.meta,
            "teacher": teacher.to_dict(), "candidates": [e.to_dict() for e in ests],
            "calibration": table.calibration.to_dict() if table.calibration else None, "warning": table.warning(),
            "provenance": table.provenance,
        }, indent=2, default=str))
        _warn(table)
        return 0
    amortised = args.template_update is not None
    rows = [_estimate_row(e, amortised) for e in (teacher, *ests)]
    _print_table(f"{table.name}: {table.meta['device']}, {table.meta['runtime']} {table.meta['precision']} ({table.meta['method']})", rows)
    _print_provenance(table)
    _print_calibration(table)
    return 0


def _estimate_row(e: Any, amortised: bool) -> dict[str, str]:
    row = {"model": e.name, "per-frame ms": f"{e.per_frame_ms:.2f}", "template ms": f"{e.template_ms:.2f}"}
    if amortised:
        row[f"ms (template every {e.template_update})"] = f"{e.amortised_ms:.2f}"
    row["fps"] = f"{e.fps:.1f}"
    row["x teacher"] = f"{e.speedup:.2f}"
    return row


def _print_provenance(table: Any) -> None:
    prov = table.provenance
    console = _console()
    if table.meta["method"] != "derived":
        console.print(f"measured {table.meta['date']} on {table.meta['device']} "
                      f"({table.meta.get('threads')} threads, clock {table.meta.get('clock', 'wall')}); sha256 {table.sha256[:12]}")
        return
    console.print(f"derived from {prov['source']['file']} column {prov['source']['column']}; tie: {prov['tie']}")
    _print_table(f"fit to {prov['source']['figures']}", _fit_rows(prov["variants"]))


def _fit_rows(variants: list[dict[str, Any]], target: str | None = None) -> list[dict[str, str]]:
    """Each fitted figure: given, fitted, and predicted without it (leave-one-out)."""
    return [{**({"target": target} if target else {}), "variant": r["name"], "role": r["role"],
             "figure ms": f"{r['published_ms']:.2f}", "fitted ms": f"{r['fitted_ms']:.2f}",
             "residual %": f"{r['residual_pct']:+.1f}", "leave-one-out %": f"{r['loo_error_pct']:+.1f}"} for r in variants]


def _console(stderr: bool = False) -> Any:
    """A rich console; wide when writing to a file or pipe, so no column is cut."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def _print_table(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0] if rows else ["(none)"]:
        table.add_column(col, justify="left" if col in ("model", "target", "variant", "role", "device", "runtime", "path") else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    _console().print(table)


@contextmanager
def _progress_display() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display on stderr, started by the first ``progress(stage, done, total)`` call.

    Starting late keeps a command that fails on its inputs down to its one-line error.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=_console(stderr=True))
    tasks: dict[str, Any] = {}
    labels = {"export": "exporting graphs", "time": "timing rounds"}

    def progress(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done)

    try:
        yield progress
    finally:
        if tasks:
            bar.stop()


def cmd_profile(args: argparse.Namespace) -> int:
    from prunesearch.errors import InputError
    from prunesearch.latency.backends import runtime_from_args
    from prunesearch.latency.profiler import ProfileRequest, profile
    from prunesearch.latency.registry import LOCAL_DIRNAME
    from prunesearch.latency.runtime import TimingPlan
    from prunesearch.models.vit_tracker import get_preset
    from prunesearch.outputs import check_name, check_output

    flag = "--out" if args.out else "--name"
    out = check_output(args.out if args.out else Path(LOCAL_DIRNAME) / f"{check_name(args.name)}.yaml", flag)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to replace it or choose another --name")
    cfg = get_preset(args.preset)
    request = ProfileRequest(
        name=args.name, cfg=cfg, runtime=runtime_from_args(args), plan=TimingPlan(rounds=args.rounds, clock=args.clock),
        chain=args.chain, device=args.device, power_mode=args.power_mode, preset=args.preset, calibrate=not args.no_calibrate,
    )
    with _progress_display() as progress:
        table = profile(request, progress)
    table.save(out, flag)
    rows = [{"part": e.kind, "ms (p50)": f"{e.ms:.4f}", "p90": f"{e.stats['p90']:.4f}", "p99": f"{e.stats['p99']:.4f}",
             "runs": e.stats["runs"]} for e in table.entries]
    _print_table(f"{table.name}: {table.meta['device']}, {table.meta['runtime']} {table.meta['provider']} {table.meta['precision']}", rows)
    _print_calibration(table)
    print(f"wrote {out}")
    return 0


def _print_calibration(table: Any) -> None:
    """The calibration's fit and leave-one-out errors, and its warning if it does not hold."""
    cal = table.calibration
    if cal is None:
        return
    rows = [{"model": g["name"], "measured ms": f"{g['measured_ms']:.3f}", "sum of parts %": f"{g['raw_error_pct']:+.1f}",
             "calibrated %": f"{100 * (g['calibrated_ms'] - g['measured_ms']) / g['measured_ms']:+.1f}",
             "leave-one-out %": f"{g['loo_error_pct']:+.1f}"} for g in cal.graphs]
    _print_table(f"calibration: {cal.graph_ms:.4f} ms per graph + {cal.block_scale:.3f} x blocks + {cal.other_scale:.3f} x rest", rows)
    _warn(table)


def _warn(table: Any) -> None:
    line = table.warning()
    if line:
        _console(stderr=True).print(line, style="yellow", markup=False)


def cmd_validate(args: argparse.Namespace) -> int:
    from prunesearch.latency import load_table
    from prunesearch.latency.validate import log_to_mlflow, validate

    from prunesearch.latency.validate import fingerprint_mismatch

    table = load_table(args.target)
    mismatch = fingerprint_mismatch(table) if table.meta.get("method") == "measured" else None
    if mismatch and args.allow_other_machine:
        _console(stderr=True).print(f"warning: {mismatch}; figures compare two machines", style="yellow", markup=False)
    with _progress_display() as progress:
        report = validate(table, args.samples, args.seed, args.rounds, args.allow_other_machine, progress)
    run_id = log_to_mlflow(report) if args.mlflow else None
    if args.json:
        print(json.dumps({**report.to_dict(), "mlflow_run_id": run_id}, indent=2, default=str))
        return 0
    rows = [{"model": r.name, "estimate ms": f"{r.estimate_ms:.3f}", "measured ms (p50)": f"{r.measured_ms:.3f}",
             "error %": f"{100 * r.error:+.1f}", "sum of parts error %": f"{100 * r.raw_error:+.1f}"} for r in report.rows]
    _print_table(f"{table.name}: table estimate vs whole per-frame graph", rows)
    labels = [("calibrated", report.summary), ("sum of parts", report.raw_summary)] if report.calibrated else [("table", report.summary)]
    for label, s in labels:
        print(f"{label}: within 5%: {100 * s['within_5pct']:.0f}%  within 10%: {100 * s['within_10pct']:.0f}%  "
              f"MAPE: {s['mape_pct']:.1f}%  Kendall tau: {s['kendall_tau']:.3f}")
    print(f"({len(report.rows)} whole graphs, {report.seconds:.0f} s)")
    _warn(table)
    if run_id:
        print(f"logged to MLflow run {run_id}")
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from prunesearch.errors import InputError
    from prunesearch.latency import load_table
    from prunesearch.latency.derive import TARGETS, derive, derive_measured, read_measured, read_published, recorded_figures
    from prunesearch.latency.registry import SHIPPED_DIR
    from prunesearch.latency.table import read_table
    from prunesearch.outputs import check_name, check_output

    tie = args.tie if args.tie == "flops" else load_table(args.tie)
    if args.measured:
        if args.name is None or args.published or args.target:
            raise InputError("--measured FILE needs --name NAME and takes no --published or --target")
        check_name(args.name)
        check_output(Path(args.out_dir) / f"{args.name}.yaml", "--out-dir")
        tables = [derive_measured(read_measured(args.measured), args.name, tie)]
    else:
        if args.name is not None:
            raise InputError("--name names a table derived from --measured FILE; published targets keep their names")
        published = read_published(args.published) if args.published else recorded_figures([read_table(SHIPPED_DIR / f"{t}.yaml") for t in TARGETS])
        for target in args.target or TARGETS:
            check_output(Path(args.out_dir) / f"{target}.yaml", "--out-dir")
        tables = [derive(published, target, tie) for target in args.target or list(TARGETS)]
    report = {}
    for table in tables:
        path = table.save(Path(args.out_dir) / f"{table.name}.yaml", "--out-dir")
        report[table.name] = {"path": str(path), "tie": table.provenance["tie"], **table.provenance["fit"],
                              "max_abs_loo_error_pct": table.provenance["max_abs_loo_error_pct"],
                              "variants": table.provenance["variants"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_table("derived tables: fit and leave-one-out errors", [row for t, rep in report.items() for row in _fit_rows(rep["variants"], t)])
    for t, rep in report.items():
        print(f"{t}: tie: {rep['tie']}")
        print(f"wrote {rep['path']}")
    return 0
