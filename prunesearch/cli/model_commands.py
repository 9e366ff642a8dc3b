"""``prunesearch inspect`` and ``prunesearch export``: look at one tracker, or write its ONNX pair.

Both build the model the same way: the teacher, or a student pruned from it with ``--depth`` and
``--ai-layers``, on a preset architecture with random weights, or from a checkpoint (prunesearch,
OSTrack or LiteTrack), whose shapes then decide the architecture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prunesearch.cli import args as argtypes
from prunesearch.data.processing import CropGeometry
from prunesearch.errors import InputError, PrunesearchError
from prunesearch.models.vit_tracker import DEFAULT_PRESET, PRESETS, TrackerBase, TrackerConfig
from prunesearch.pruning import CALIBRATION_PAIRS, calibration_batch, needs_calibration, rule_names, student_from_teacher

RANDOM_WEIGHTS = "random"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=argtypes.count, default=None, help="student depth N (omit for the teacher)")
    p.add_argument("--ai-layers", type=argtypes.count, default=None, help="interaction layers M of the student")
    p.add_argument(
        "--rule", default=None, help=f"teacher blocks a student keeps (default first): {', '.join(rule_names())} (rules that "
        f"measure block influence: {_calibrated()}, on calibration crops, see --data), or a comma list such as 0,2,4"
    )
    p.add_argument("--data", type=argtypes.nonempty_path, default=None, help="dataset folder (GOT-10k, LaSOT) whose train split gives "
                   f"--rule {_calibrated()} its calibration crops, as the search takes them (default: built-in sequences)")
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help=f"architecture preset with random weights (default {DEFAULT_PRESET}; not with --checkpoint)",
    )
    p.add_argument(
        "--checkpoint",
        type=argtypes.nonempty_path,
        default=None,
        help="prunesearch, OSTrack or LiteTrack weights; the file's shapes give the architecture",
    )
    p.add_argument("--heads", type=argtypes.count, default=None, help="attention heads of an OSTrack/LiteTrack checkpoint (default width/64)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="params, GMACs, token counts and blocks of the teacher or a student",
        description="Params, per-frame and template GMACs (analytic and fvcore; 1 MAC = one multiply-add), "
        "token counts and the teacher blocks a student keeps.",
    )
    _add_model_args(p)
    p.add_argument("--no-fvcore", action="store_true", help="skip the fvcore trace (analytic counts only)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "export",
        help="write the template and per-frame ONNX graphs of the teacher or a student",
        description="Writes OUT/template.onnx (template crop -> cached features) and OUT/frame.onnx "
        "(cached features + search crop -> score, size and offset maps and the box).",
    )
    _add_model_args(p)
    p.add_argument("--out", type=argtypes.nonempty_path, required=True, help="folder for template.onnx and frame.onnx")
    p.add_argument("--check", action="store_true", help="run both graphs in onnxruntime and compare with PyTorch")
    p.set_defaults(func=cmd_export)

    ckpt = sub.add_parser("checkpoint", help="checkpoint files")
    ckpt_sub = ckpt.add_subparsers(dest="checkpoint_command", metavar="COMMAND", required=True)
    p = ckpt_sub.add_parser(
        "extract",
        help="write the weights of an OSTrack/LiteTrack training checkpoint to a weights-only file",
        description="Reads IN with a restricted unpickler (no code in the file runs; unknown classes become inert "
        "placeholders) and writes its 'net' weights and the plain parts of its settings (crop factors) to OUT.",
    )
    p.add_argument("source", type=Path, metavar="IN", help="training checkpoint, e.g. OSTrack_ep0300.pth.tar")
    p.add_argument("out", type=Path, metavar="OUT", help="weights-only file to write")
    p.set_defaults(func=cmd_checkpoint_extract)


def _calibrated() -> str:
    """The registered rules that measure block influence, for help and error texts."""
    return "/".join(name for name in rule_names() if needs_calibration(name))


def _parse_rule(text: str) -> str | list[int]:
    if text in rule_names():
        return text
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise InputError(
            f"--rule {text!r}: use one of {', '.join(rule_names())}, or a comma list of teacher block indices"
        ) from None


def build_model(args: argparse.Namespace) -> tuple[TrackerBase, str]:
    """The model the shared flags describe, and where its weights came from."""
    from prunesearch.checkpoints import load_checkpoint, load_tracker
    from prunesearch.models.vit_tracker import build_teacher, get_preset

    if args.rule is not None and args.depth is None:
        raise InputError(f"--rule {args.rule} picks the blocks of a student: it needs --depth N and --ai-layers M")
    args.rule = args.rule or "first"
    rule = _parse_rule(args.rule)
    calibrated = needs_calibration(rule)
    if args.data is not None and not calibrated:
        raise InputError(f"--data gives --rule {_calibrated()} its calibration crops; it has no use with --rule {args.rule}")
    if args.checkpoint is not None:
        if args.preset is not None:
            raise InputError("give --preset or --checkpoint, not both: a checkpoint's shapes decide its architecture")
        if calibrated and args.depth is not None:
            loaded = load_tracker(args.checkpoint, num_heads=args.heads)
            # Measured on crops as the checkpoint tracks them (OSTrack-384: search factor 5), not the default's.
            return _calibrated_student(loaded.model, args, loaded.crop or CropGeometry()), str(args.checkpoint)
        model = load_checkpoint(args.checkpoint, depth=args.depth, ai_layers=args.ai_layers, rule=rule, num_heads=args.heads)
        return model, str(args.checkpoint)
    if args.heads is not None:
        raise InputError("--heads only applies to an OSTrack or LiteTrack --checkpoint")
    if args.depth is None and args.ai_layers is not None:
        raise InputError("--ai-layers needs --depth (a student B{N}-{M})")
    if args.depth is not None and args.ai_layers is None:
        raise InputError(f"--depth {args.depth} needs --ai-layers M for the student B{args.depth}-M")
    teacher = build_teacher(get_preset(args.preset or DEFAULT_PRESET)).eval()
    if args.depth is None:
        return teacher, RANDOM_WEIGHTS
    if calibrated:
        return _calibrated_student(teacher, args, CropGeometry()), RANDOM_WEIGHTS
    return student_from_teacher(teacher, args.depth, args.ai_layers, rule).eval(), RANDOM_WEIGHTS


def _calibrated_student(teacher: TrackerBase, args: argparse.Namespace, crop: CropGeometry) -> TrackerBase:
    """The student a measuring rule picks from calibration crops taken as the search takes them
    (:func:`prunesearch.pruning.calibration_batch`), with the teacher's own crop geometry."""
    if args.ai_layers is None:
        raise InputError(f"--depth {args.depth} needs --ai-layers M for the student B{args.depth}-M")
    if args.data is None:
        from prunesearch.data.synthetic import builtin_sequences

        train = builtin_sequences("train", count=CALIBRATION_PAIRS * 4)
    else:
        from prunesearch.data import open_dataset

        train = open_dataset(args.data, split="train")
    crops = calibration_batch(teacher, train, CALIBRATION_PAIRS, crop)
    return student_from_teacher(teacher, args.depth, args.ai_layers, args.rule, crops).eval()


def _architecture_name(cfg: TrackerConfig) -> str:
    return next((name for name, preset in PRESETS.items() if preset == cfg), "custom")


def describe_model(model: TrackerBase, weights: str, fvcore: bool = True) -> dict:
    """Everything ``inspect`` reports, as plain data."""
    from prunesearch.flops import analytic_macs, fvcore_macs, phase_params

    cfg = model.cfg
    student = getattr(model, "spec", None)
    analytic = analytic_macs(model)
    params = phase_params(model)
    info = {
        "model": student.name if student else "teacher",
        "architecture": _architecture_name(cfg),
        "weights": weights,
        "embed_dim": cfg.embed_dim,
        "heads": cfg.num_heads,
        "params_m": params.total / 1e6,
        "per_frame_params_m": params.per_frame / 1e6,
        "template_params_m": params.template / 1e6,
        "per_frame_gmacs": analytic.per_frame_gmacs,
        "template_gmacs": analytic.template_gmacs,
        "template_tokens": cfg.template_tokens,
        "search_tokens": cfg.search_tokens,
        "joint_tokens" if not student else "interaction_kv_tokens": cfg.template_tokens + cfg.search_tokens,
        "blocks": list(student.blocks) if student else list(range(model.depth)),
    }
    if student:
        info["search_only_blocks"] = student.depth - student.ai_layers
        info["interaction_blocks"] = student.ai_layers
    if fvcore:
        counted = fvcore_macs(model)
        info["per_frame_gmacs_fvcore"] = counted.per_frame_gmacs
        info["template_gmacs_fvcore"] = counted.template_gmacs
    return info


def cmd_inspect(args: argparse.Namespace) -> int:
    model, weights = build_model(args)
    info = describe_model(model, weights, fvcore=not args.no_fvcore)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{info['model']} ({info['architecture']}, weights: {weights})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in info.items():
        if key in ("model", "architecture", "weights"):
            continue
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    print("GMACs: 1e9 multiply-adds; per-frame work excludes the template step, which runs once per template.")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from prunesearch.export import ATOL, OnnxTracker, check_export, describe, export_tracker

    from prunesearch.outputs import check_output

    check_output(args.out, "--out", folder=True)  # before the model is built: nothing is made for a refused place
    model, weights = build_model(args)
    name = describe(model, weights)["prunesearch.model"]
    if weights == RANDOM_WEIGHTS:
        print(f"{name}: weights are random (no --checkpoint); fine for latency work, not for tracking")
    template_path, frame_path = export_tracker(model, args.out, weights)
    print(f"wrote {template_path} (z -> z_feat) and {frame_path} (z_feat, x -> score_map, size_map, offset_map, box)")
    if args.check:
        diffs = check_export(model, OnnxTracker(template_path, frame_path))
        print("onnxruntime vs PyTorch, max abs diff: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > ATOL:
            raise PrunesearchError(f"check failed: exported {worst} differs from PyTorch by {diffs[worst]:.2e} (> {ATOL:g})")
        print(f"check passed: every output within {ATOL:g} of PyTorch (worst {worst}, {diffs[worst]:.2e})")
    return 0


def cmd_checkpoint_extract(args: argparse.Namespace) -> int:
    from prunesearch.checkpoints import crop_of, extract, read_file

    out, left_out = extract(args.source, args.out)
    crop = crop_of(read_file(out), str(out))
    said = f"; crop factors template {crop.template_factor:g}, search {crop.search_factor:g}" if crop else ""
    dropped = f"; left out: {', '.join(left_out)}" if left_out else ""
    print(f"wrote {out}{said}{dropped}")
    return 0
