"""``prunesearch inspect`` and ``prunesearch export``: look at and export one tracker."""

from __future__ import annotations

import argparse
import json

from prunesearch.models.vit_tracker import DEFAULT_PRESET, PRESETS


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=int, default=None, help="student depth N (omit for the teacher)")
    p.add_argument("--ai-layers", type=int, default=None, help="interaction layers M of the student")
    p.add_argument("--rule", default="first", help="block choice: first, uniform, or a comma list of teacher blocks")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="architecture preset")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="params, GMACs and token counts of the teacher or a student")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from prunesearch.models import count_params
    from prunesearch.models.vit_tracker import build_teacher, get_preset
    from prunesearch.pruning import student_from_teacher

    cfg = get_preset(args.preset)
    teacher = build_teacher(cfg)
    model = teacher
    if args.depth is not None:
        rule = args.rule if args.rule in ("first", "uniform") else [int(b) for b in args.rule.split(",")]
        model = student_from_teacher(teacher, args.depth, args.ai_layers or args.depth, rule)
    info = {
        "model": getattr(model, "spec", None) and model.spec.name or "teacher",
        "preset": args.preset,
        "params_m": count_params(model) / 1e6,
        "template_tokens": cfg.template_tokens,
        "search_tokens": cfg.search_tokens,
        "blocks": list(model.spec.blocks) if hasattr(model, "spec") else list(range(model.depth)),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title=f"{info['model']} ({args.preset})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in info.items():
        table.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    Console().print(table)
    return 0
