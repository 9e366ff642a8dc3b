"""``prunesearch eval``: track a dataset with a checkpoint (or the shipped teacher, or ONNX graphs),
score it with the GOT-10k and OTB/LaSOT metrics, and optionally run OpenCV baselines beside it."""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import ExitStack
from pathlib import Path

from prunesearch.cli import args as argtypes
from prunesearch.cli.search_commands import add_crop_args, add_device_args
from prunesearch.devices import PRECISIONS
from prunesearch.errors import InputError
from prunesearch.evaluation.uncertainty import DEFAULT_LEVEL, DEFAULT_RESAMPLES, MAX_RESAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="track sequences and score them (AO, SR, success AUC, precision)",
        description="Track every sequence of a GOT-10k or LaSOT folder (or the built-in synthetic "
        "validation sequences) and print AO, SR0.5, SR0.75, success AUC, precision and normalised "
        "precision as the official toolkits compute them.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=argtypes.nonempty_path, metavar="FILE", help="tracker checkpoint (default: the shipped small teacher)")
    source.add_argument("--onnx", type=argtypes.nonempty_path, metavar="DIR", help="folder with exported template.onnx and frame.onnx, run by onnxruntime")
    p.add_argument("--data", type=argtypes.nonempty_path, metavar="DIR", help="GOT-10k or LaSOT folder (default: built-in synthetic sequences)")
    p.add_argument("--split", default=None, help="dataset split (GOT-10k: train, val, test; default val)")
    p.add_argument("--sequences", type=argtypes.count, default=None, metavar="N", help="only the first N sequences")
    p.add_argument("--baselines", default="", metavar="NAMES", help="comma list of OpenCV baselines to run beside: mil, kcf, csrt")
    p.add_argument("--out", type=argtypes.nonempty_path, metavar="DIR", help="write results in the GOT-10k layout to DIR/<tracker>/<seq>/")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_device_args(p)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto (bf16 on a capable GPU, else fp32), fp32, bf16, fp16")
    add_crop_args(p)
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, metavar="N",
                   help=f"bootstrap resamples of the sequences for the confidence intervals (default {DEFAULT_RESAMPLES})")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, metavar="P",
                   help=f"confidence level of the intervals (default {DEFAULT_LEVEL})")
    p.set_defaults(func=cmd_eval)


def _load_sequences(args: argparse.Namespace) -> tuple[list, str]:
    if args.data is not None:
        from prunesearch.data import open_dataset

        sequences, source = open_dataset(args.data, args.split, args.sequences), str(args.data)
    else:
        try:
            from prunesearch.data.synthetic import builtin_sequences
        except ModuleNotFoundError as err:
            if err.name != "prunesearch.data.synthetic":
                raise
            raise InputError(
                "the built-in synthetic sequences are not available in this installation; pass --data DIR"
            ) from None
        split = args.split or "val"
        sequences, source = builtin_sequences(split), f"built-in synthetic ({split})"
    return sequences[: args.sequences], source


def _load_model(args: argparse.Namespace) -> tuple[object, str, dict, object]:
    """The model (or ONNX folder), its display name, what to report about it, and its crop geometry."""
    from prunesearch.data.processing import CropGeometry
    from prunesearch.models.vit_tracker import PRESETS

    crop = None
    if args.onnx is not None:
        from prunesearch.evaluation.backends import backend_for

        geometry = CropGeometry().override(args.template_factor, args.search_factor)
        # The graphs are opened now, before any data is read or made: a missing or broken pair fails first.
        graphs = backend_for(args.onnx, args.onnx.name or "onnx")
        return graphs, graphs.name, {"source": str(args.onnx), "runtime": "onnxruntime"}, geometry
    if args.checkpoint is not None:
        from prunesearch.checkpoints import load_tracker

        loaded = load_tracker(args.checkpoint, device=_device(args))
        model, crop, source = loaded.model, loaded.crop, str(args.checkpoint)
    else:
        from prunesearch.teacher import SHIPPED_TEACHER, load_shipped_teacher

        model, source = load_shipped_teacher(), f"shipped teacher {SHIPPED_TEACHER.name}"
    spec = getattr(model, "spec", None)
    name = spec.name if spec is not None else "teacher"
    preset = next((n for n, cfg in PRESETS.items() if cfg == model.cfg), "custom")
    geometry = (crop or CropGeometry()).override(args.template_factor, args.search_factor)
    info = {"source": source, "runtime": "pytorch", "kind": model.kind, "preset": preset, "crop": geometry.to_dict()}
    return model, name, info, geometry


def _device(args: argparse.Namespace) -> str:
    """``--device``, or auto when not given; an empty one is refused where the device is read, not taken as auto."""
    return "auto" if args.device is None else args.device


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def cmd_eval(args: argparse.Namespace) -> int:
    from prunesearch.evaluation import OpenCVTracker
    from prunesearch.devices import resolve_device
    from prunesearch.evaluation.uncertainty import check_resamples
    from prunesearch.outputs import check_output, output_folder

    if not 1 <= args.resamples <= MAX_RESAMPLES:
        raise InputError(f"--resamples must be at least 1 and at most {MAX_RESAMPLES} (MAX_RESAMPLES), got {args.resamples}")
    if not 0.0 < args.level < 1.0:
        raise InputError(f"--level must lie strictly between 0 and 1 (e.g. 0.95), got {args.level}")
    # Built first so an unknown or unavailable baseline fails before any tracking.
    baselines = [OpenCVTracker(b.strip().lower()) for b in args.baselines.split(",") if b.strip()]
    resolve_device(_device(args))  # a device that is not here (or an empty --device) fails before any data is made
    if args.out is not None:
        check_output(args.out, "--out", folder=True)  # before any tracking: a place that cannot be written is refused now
    model, name, model_info, crop = _load_model(args)
    sequences, source = _load_sequences(args)
    check_resamples(args.resamples, len(sequences))
    with ExitStack() as stack:
        # Results are written whole or not at all: into a folder beside --out, moved into it at the end.
        staging = None if args.out is None else stack.enter_context(output_folder(args.out, "--out"))
        report, results, intervals = _evaluate(args, model, name, model_info, crop, sequences, source, baselines, staging)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_table(results, intervals, source, len(sequences), report["small_stand_in"], args.out)
    return 0


def _evaluate(args: argparse.Namespace, model, name: str, model_info: dict, crop, sequences: list, source: str,
              baselines: list, staging: Path | None) -> tuple[dict, list, list]:
    """Track and score with the model and each baseline; results go under ``staging`` when given."""
    from prunesearch.evaluation import TrackingParams, evaluate, evaluate_tracker
    from prunesearch.evaluation.results import write_report

    def out_dir(tracker_name: str) -> Path | None:
        return None if staging is None else staging / _folder_name(tracker_name)

    progress = _progress(len(sequences))
    results = [
        evaluate(model, sequences, out_dir(name), TrackingParams(crop=crop), name, progress, _device(args), args.precision)
    ]
    results += [evaluate_tracker(b, sequences, out_dir(b.name), progress) for b in baselines]

    intervals = [_intervals(r, args.resamples, args.level) for r in results]
    rows = [{**r.to_dict(), "ci": {m: iv.to_dict() for m, iv in ci.items()}} for r, ci in zip(results, intervals)]
    # Unknown (None) for ONNX graphs, which do not say which preset they were exported from.
    stand_in = None if args.onnx is not None else model_info["preset"] == "small"
    report = {
        "data": source,
        "sequences": len(sequences),
        "model": model_info,
        "small_stand_in": stand_in,
        "bootstrap": {"resamples": args.resamples, "level": args.level, "unit": "sequence"},
        "results": rows,
    }
    if staging is not None:
        for r, row in zip(results, rows):
            write_report(staging / f"{_folder_name(r.name)}.json", {**report, "results": [row]})
    return report, results, intervals


def _intervals(result, resamples: int, level: float) -> dict:
    """Bootstrap intervals of AO/SR/AUC over the scored sequences (empty where none was scored)."""
    from prunesearch.evaluation.uncertainty import SequenceStats, bootstrap_intervals

    if result.scored == 0:
        return {}
    return bootstrap_intervals(SequenceStats.from_results(result.sequences), resamples, level)


def _progress(total: int):
    """A per-sequence status on stderr, so a long evaluation is never silent: an updating line on a
    terminal, one line per sequence elsewhere (stdout keeps only the table or the JSON)."""
    from rich.console import Console

    console = Console(stderr=True)
    done = 0

    def show(seq_name: str) -> None:
        nonlocal done
        done = done % total + 1
        if console.is_terminal:
            console.print(f"[dim]tracking {done}/{total} {seq_name}[/dim]", end="\r")
        else:
            print(f"tracking {done}/{total} {seq_name}", file=sys.stderr, flush=True)

    return show


def _print_table(
    results: list, intervals: list[dict], source: str, count: int, stand_in: bool | None, out: Path | None
) -> None:
    import math

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{source}: {count} sequences")
    for column in ("tracker", "AO", "SR0.5", "SR0.75", "AUC", "P@20px", "NP@0.2", "FPS", "frames"):
        if column == "tracker":
            table.add_column(column, no_wrap=True, min_width=max((len(r.name) for r in results), default=7))
        else:
            table.add_column(column, justify="right")
    def cell(metric: str, value: float, ci: dict) -> str:
        if math.isnan(value):
            return "n/a"
        iv = ci.get(metric)
        span = f"\n{100 * iv.low:.1f}-{100 * iv.high:.1f}" if iv is not None and not math.isnan(iv.low) else ""
        return f"{100 * value:.1f}{span}"

    metrics = ("ao", "sr50", "sr75", "auc", "precision", "norm_precision")
    for r, ci in zip(results, intervals):
        cells = [cell(m, getattr(r, m), ci) for m in metrics]
        table.add_row(r.name, *cells, "n/a" if math.isnan(r.fps) else f"{r.fps:.1f}", str(r.frames))
    level = next((iv.level for ci in intervals for iv in ci.values()), None)
    notes = ["accuracy in %; AO/SR per the GOT-10k toolkit, AUC/P/NP per the OTB/LaSOT protocol"]
    if level is not None:
        notes.append(f"under each figure its {100 * level:.0f}% bootstrap interval over sequences")
    if stand_in:
        notes.append("accuracy of the small CPU stand-in preset, not of the ViT-B deployment architecture")
    if results and results[0].scored == 0:
        notes.append("no ground truth beyond the first frame (GOT-10k test): submit the --out results to the server")
    if out is not None:
        notes.append(f"results written under {out}")
    table.caption = "; ".join(notes)
    console = Console()
    if not console.is_terminal:
        # Piped or redirected: wide enough that the intervals under the figures are not folded.
        console = Console(width=max(console.width, 110))
    console.print(table)
