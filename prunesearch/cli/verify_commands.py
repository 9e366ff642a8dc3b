"""``prunesearch verify``: a search's front timed on the device a table prices, beside its prices."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING

from prunesearch.cli import args as argtypes

if TYPE_CHECKING:
    from prunesearch.search.verification import Derived, Repricing, Verification

STATISTICS = ("p50", "p90", "p99", "mean")


def register(sub: argparse._SubParsersAction) -> None:
    from prunesearch.verify.device_runner import JOB_DEFAULTS

    p = sub.add_parser(
        "verify",
        help="time a search's front on the device a table prices (here or over SSH) and compare with its prices",
        description="Time each member's two ONNX graphs and the teacher's as the tracker runs them (template once, "
        "per-frame graph fed the cached template features), with the runtime, provider, threads and precision of "
        "T's meta, on this machine or on --host over your own ssh (the device needs python3, numpy and onnxruntime "
        "only). Figures are recorded on the members' MLflow runs and the search's parent run.",
    )
    p.add_argument("--experiment", required=True, help="experiment name (its MLflow experiment) or file")
    p.add_argument("--target", required=True, metavar="T",
                   help="latency table to check: a name (./latency_models, shipped) or a .yaml path, of the search's architecture")
    p.add_argument("--host", metavar="[USER@]HOST[:PORT]", help="the device, reached with ssh (a ~/.ssh/config alias works); "
                   "default: this machine")
    p.add_argument("--members", default="front", metavar="front|tied|all|NAMES",
                   help="front (default), tied (the front and the candidates tied with it), all trained candidates, "
                   "or candidate keys separated by commas; the teacher is always timed")
    p.add_argument("--runs", type=argtypes.count, default=JOB_DEFAULTS["runs"], help="timed frames per model (default 200)")
    p.add_argument("--warmup", type=argtypes.whole(0), default=JOB_DEFAULTS["warmup"], help="untimed frames first (default 20)")
    p.add_argument("--budget", help="per-frame budget to hold at p99, e.g. 10ms (default: the search's)")
    p.add_argument("--study", help="only runs of this study (run tag 'study')")
    p.add_argument("--allow-mixed", action="store_true", help="combine runs with different data or teacher fingerprints")
    p.add_argument("--strict", action="store_true", help="exit 1 when a front member is over the budget at p99")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--derive", metavar="NAME", help="fit table NAME to the figures (./latency_models/NAME.yaml, as "
                   "'latency derive --measured' does) and print the front re-priced with it")
    p.add_argument("--statistic", choices=STATISTICS, default="p50",
                   help="which figure --derive fits (default p50; p99 prices for the budget at p99)")
    dev = p.add_argument_group("device access (with --host)")
    dev.add_argument("--python", metavar="CMD", help="the device's python command (default python3 there, this python here)")
    dev.add_argument("--identity", metavar="FILE", help="ssh key file (-i); default: your ssh configuration and agent")
    dev.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE", help="extra ssh -o option; repeatable")
    dev.add_argument("--remote-tmp", metavar="DIR", help="folder on the device for the private temporary folder (default its TMPDIR)")
    dev.add_argument("--timeout", type=argtypes.count, metavar="S", help="stop the device run after S seconds")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from prunesearch.mlflow_log.store import tracking_uri
    from prunesearch.search.verification import DeviceAccess, VerifyRequest, derive_table, record, reprice, verify

    device = DeviceAccess(args.host, args.python, args.identity, tuple(args.ssh_option), args.remote_tmp, args.timeout)
    req = VerifyRequest(args.experiment, args.target, args.members, args.runs, args.warmup, args.budget, args.study, args.allow_mixed,
                        device, args.derive)
    uri = tracking_uri()
    v = verify(req, uri)  # raises on any failure: nothing is recorded then
    parent = record(v, uri)
    derived = None
    if args.derive:
        derived = derive_table(v, args.derive, args.statistic)
        again = reprice(list(v.repricing.stored.values()), derived.table, v.experiment, args.allow_mixed)
    if args.json:
        doc = v.to_dict() | {"parent_run": parent}
        if derived is not None:
            doc["derived"] = _derived_doc(derived, again, v.budget_ms)
        for line in v.warnings:
            print(f"warning: {line}", file=sys.stderr)
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print(v, parent)
        if derived is not None:
            _print_derived(derived, again, v.budget_ms)
    if args.strict and v.over_budget():
        print(f"--strict: front member(s) over {v.budget_ms:.2f} ms at p99: {', '.join(m.name for m in v.over_budget())}",
              file=sys.stderr)
        return 1
    return 0


def _print(v: "Verification", parent: str | None) -> None:
    from prunesearch.cli.latency_commands import _console

    console = _console()
    console.print(v.repricing.line(), markup=False)
    for line in v.notes:
        console.print(f"note: {line}", markup=False)
    for line in v.warnings:
        console.print(f"warning: {line}", style="bold yellow", markup=False)
    console.print(verification_table(v))
    tau = f"{v.kendall_tau:.2f}" if math.isfinite(v.kendall_tau) else "n/a"
    console.print(f"overall: median drift {100 * v.median_drift:+.1f}%, Kendall tau {tau} ({len(v.models)} models, "
                  f"{v.report.settings.get('runs')} runs each, {v.report.where}); front over budget at p99: "
                  f"{', '.join(m.name for m in v.over_budget()) or 'none'}", markup=False)
    if parent:
        console.print(f"recorded on each member's MLflow run and on parent run {parent}", markup=False)


def verification_table(v: "Verification"):  # noqa: ANN201 - a rich Table
    from rich import box
    from rich.table import Table

    title = (f"{v.experiment} on {v.report.device.get('name')} ({v.report.where}) against {v.repricing.target}, "
             f"budget {v.budget_ms:.2f} ms")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                  caption="ms per frame; tmpl: the template step, per template; drift: measured p50 / priced - 1",
                  caption_justify="left")
    for col in ("model", "status", "priced", "p50", "p90", "p99", "tmpl", "budget", "p99 fits", "drift"):
        table.add_column(col, justify="left" if col in ("model", "status") else "right", no_wrap=True)
    for m in v.models:
        fits = "" if m.within_budget is None else "yes" if m.within_budget else "NO"
        budget = "" if m.budget_ms is None else f"{m.budget_ms:.2f}"
        table.add_row(m.name, m.status, f"{m.priced_ms:.2f}", f"{m.p50:.2f}", f"{m.p90:.2f}", f"{m.p99:.2f}",
                      f"{m.template_ms:.2f}", budget, fits, f"{100 * m.drift:+.1f}%")
    return table


def _repriced_front(rep: "Repricing", budget_ms: float) -> tuple[list, list]:
    from prunesearch.search.results import fronts_and_ties

    fronts, ties = fronts_and_ties(rep.results, [rep.target], budget_ms)
    return fronts[rep.target], ties[rep.target]


def _derived_doc(d: "Derived", rep: "Repricing", budget_ms: float) -> dict:
    front, tied = _repriced_front(rep, budget_ms)
    prov = d.table.provenance
    return {"name": d.table.name, "path": str(d.path), "measured": str(d.measured), "tie": d.tie,
            "max_abs_loo_error_pct": prov["max_abs_loo_error_pct"], "variants": prov["variants"],
            "front": [r.row(rep.target, "front") for r in front] + [r.row(rep.target, "tied") for r in tied]}


def _print_derived(d: "Derived", rep: "Repricing", budget_ms: float) -> None:
    from prunesearch.cli.latency_commands import _console, _fit_rows, _print_table
    from prunesearch.cli.search_commands import front_table

    console = _console()
    console.print(f"derived {d.table.name} from the figures ({d.measured}); {d.tie}", markup=False)
    _print_table(f"{d.table.name}: fit and leave-one-out errors", _fit_rows(d.table.provenance["variants"]))
    console.print(f"wrote {d.path}; the next search prices with --target {d.table.name}", markup=False)
    console.print(rep.line(), markup=False)
    front, tied = _repriced_front(rep, budget_ms)
    console.print(front_table(front, rep.target, f"Pareto front re-priced on {rep.target}, budget {budget_ms:.2f} ms", tied))
