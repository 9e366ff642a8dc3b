"""``prunesearch run``, ``prunesearch pareto`` and ``prunesearch ui``: the search and its review."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from prunesearch.cli import args as argtypes
from prunesearch.search.plot import SCALE_NOTE, SMALL_SCALE
from prunesearch.search.stage import BRIEF, CONFIRM, STAGES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from prunesearch.search.confirm import ConfirmStage
    from prunesearch.search.controller import Plan
    from prunesearch.search.results import CandidateResult

DEFAULT_EXPERIMENT = "b4-b9"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="search students for a device and latency budget; log every candidate to MLflow",
        description="Price every candidate, fine-tune those that fit the budget (sampled or enumerated), "
        "and print the Pareto front per target. Running the same command again resumes the search.",
    )
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name (experiments/NAME.yaml) or file")
    p.add_argument("--target", action="append", required=True, metavar="T", help="device to price for; repeat for several")
    p.add_argument("--budget", required=True, help="per-frame latency budget: 10ms, 0.01s or 100fps")
    p.add_argument("--trials", type=argtypes.trials, help="students to fine-tune, or auto: until none left could "
                   "enter the front (default: the experiment's)")
    p.add_argument("--workers", type=argtypes.count, help="worker processes on this machine sharing the study "
                   "(at most one per CPU unless --force)")
    p.add_argument("--force", action="store_true", help="allow more --workers than this machine has CPUs")
    p.add_argument("--storage", type=argtypes.nonempty, help="Optuna storage URL (default: sqlite optuna.db beside the MLflow store); "
                   "a PostgreSQL URL lets several machines share one study")
    p.add_argument("--seed", type=argtypes.seed, help="seed of the fine-tunes and the sampler (default: the experiment's)")
    p.add_argument("--teacher", metavar="FILE", help="OSTrack, LiteTrack or prunesearch teacher checkpoint")
    p.add_argument("--data", metavar="DIR", help="GOT-10k or LaSOT root (default: built-in sequences)")
    p.add_argument("--workdir", metavar="DIR", help="where candidate checkpoints go (default: ./runs)")
    add_device_args(p)
    p.add_argument("--gpus", metavar="LIST", help="GPUs the workers take, one each in turn, e.g. 0,1 (default: every GPU)")
    add_crop_args(p)
    p.add_argument("--template-update", type=int, metavar="K",
                   help="the tracker re-encodes its template every K frames: price the template branch amortised over "
                   "K frames into the latency objective and the budget (default: paid once per sequence, not priced)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("pareto", help="the Pareto front of an experiment, read from the MLflow store")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name")
    p.add_argument("--target", help="one target (default: every target the runs were priced on)")
    p.add_argument("--budget", help="only candidates within this budget, e.g. 10ms")
    p.add_argument("--study", help="only runs of this study (run tag 'study')")
    p.add_argument("--allow-mixed", action="store_true", help="combine runs with different table, data or teacher fingerprints")
    p.add_argument("--all", action="store_true", help="list the dominated candidates too (after the front and the tied ones)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--plot", metavar="FILE", type=argtypes.nonempty, help="write a PNG plot (one per target: FILE_target.png when several)")
    p.add_argument("--level", type=float, default=0.95, metavar="P",
                   help="confidence level of the paired tests that mark tied candidates (default 0.95)")
    p.add_argument("--stage", choices=STAGES,
                   help="which results: the confirmation stage's (the default where the search confirmed its front) "
                   "or the brief fine-tunes'")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="paired bootstrap of AO(A) - AO(B) on the sequences both were scored on, e.g. B4-1/first B4-2/first")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser(
        "ui",
        help="the MLflow UI over the same store, on 127.0.0.1",
        description="Serve the MLflow UI over the search's store (MLFLOW_TRACKING_URI, else ./mlflow.db) and "
        "print the URL of the latest search's parent run (its front, plots and verification) in model-training mode. "
        "The server stops with this command (Ctrl-C or SIGTERM).",
    )
    p.add_argument("--experiment", help="experiment whose runs to open (default: the most recent search in the store)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; another needs --allow-remote)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other machines can reach; the MLflow UI has no authentication, so put one in front")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1, help="MLflow web workers (default 1)")
    p.add_argument("--browser", action=argparse.BooleanOptionalAction, default=None,
                   help="open the URL in a browser (default: when a graphical display is available)")
    p.set_defaults(func=cmd_ui)


class RichDisplay:
    """Trials done and left, each worker's current candidate and step, ETA.

    Called from the main thread (worker 0) and from the thread relaying the other workers' events.
    """

    def __init__(self, console: "Console") -> None:
        import threading

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.overall = None
        self.lock = threading.Lock()
        self.tasks: dict[int, int] = {}
        self.left = self.done = self.steps = 0
        self.noun = "fine-tunes"

    def __enter__(self) -> "RichDisplay":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.overall is not None:  # a search that never began (bad input) prints nothing
            self.progress.stop()

    def _describe(self) -> str:
        return f"{self.noun}: {self.done} done, {self.left} left"

    def begin(self, plan: "Plan", steps: int, workers: int) -> None:
        self.steps, self.left = steps, max(plan.target - plan.done, 0)
        extra = f", {len(plan.retried)} interrupted re-queued" if plan.retried else ""
        known = f", {plan.known} of them fine-tuned by earlier searches" if plan.known else ""
        self.console.print(
            f"strategy: [bold]{plan.strategy}[/]; {plan.feasible} candidates fit the budget, {plan.students} distinct "
            f"students{known}; {plan.done} already done, {self.left} to fine-tune with {workers} worker(s){extra}"
        )
        self._overall()
        self.progress.start()

    def _overall(self) -> None:
        total = max(self.left * self.steps, 1)
        self.overall = self.progress.add_task(self._describe(), total=total, completed=0 if self.left else total)

    def confirm(self, stage: "ConfirmStage") -> None:
        s = stage.settings
        with self.lock:
            self.steps, self.left, self.done, self.noun = s.steps * s.seeds, len(stage.members) - stage.settled, 0, "confirmations"
            self.progress.console.print(
                f"confirmation: {len(stage.members)} candidates (the brief front and those tied with it), each "
                f"{s.steps} more steps x {s.seeds} seed(s) from its brief checkpoint, scored on {stage.sequences} "
                f"sequences; {stage.settled} already done"
            )
            self._overall()

    def started(self, worker: int, key: str, steps: int) -> None:
        with self.lock:
            if worker not in self.tasks:
                self.tasks[worker] = self.progress.add_task("", total=steps)
            self.progress.reset(self.tasks[worker], total=steps, description=f"  worker {worker}: {key} steps")

    def stepped(self, worker: int, done: int) -> None:
        with self.lock:
            task = self.progress.tasks[self.tasks[worker]]
            self.progress.advance(self.overall, done - task.completed)
            self.progress.update(self.tasks[worker], completed=done)

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None:
        with self.lock:
            task = self.progress.tasks[self.tasks[worker]]
            self.progress.advance(self.overall, task.total - task.completed)
            self.done, self.left = self.done + 1, max(self.left - 1, 0)
            self.progress.update(self.overall, description=self._describe())
            score = "" if ao is None else f", AO {100 * ao:.1f}"
            said = f"{key}: {outcome.replace('_', ' ')}{score} ({int(task.completed)} steps)"
            self.progress.console.print(f"  {said}")
            self.progress.update(self.tasks[worker], completed=task.total, description=f"  worker {worker}: {said}")

    def reused(self, worker: int, key: str, source: str, outcome: str, ao: float | None) -> None:
        score = "" if ao is None else f", AO {100 * ao:.1f}"
        with self.lock:
            self.progress.console.print(f"  {key}: {outcome.replace('_', ' ')}{score} (the same student as {source}: "
                                        "its fine-tune reused)", markup=False)


def front_table(front: list["CandidateResult"], target: str, title: str, tied: list["CandidateResult"] = (),
                dominated: list["CandidateResult"] = ()) -> "Table":
    """Compact enough for an 80-column terminal; SR0.75, fps and the blocks kept are in --json/--csv
    and MLflow. Tied candidates (off the front, not significantly worse than it) follow, marked ~,
    then the dominated ones (``pareto --all``), marked -.
    """
    from rich import box
    from rich.table import Table

    caption = (f"AO, SR0.5, AUC in %; 95% CI: AO's bootstrap interval over sequences; ms per frame and tmpl ms "
               f"per template on {target}; GMACs per frame; M par: millions")
    if tied:
        caption += "; ~ tied: off the front but not significantly below a no-slower front member"
    if dominated:
        caption += "; - dominated"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True,
        caption=caption, caption_justify="left",
    )
    for col in ("candidate", "AO", "95% CI", "SR50", "AUC", "ms", "tmpl ms", "GMACs", "M par"):
        # A student under several rules (``B4-1/first = B4-1/influence``) wraps after its "=", never the figures.
        table.add_column(col, justify="left" if col == "candidate" else "right", no_wrap=col != "candidate")
    rows = [(r, "") for r in front] + [(r, "~ ") for r in tied] + [(r, "- ") for r in dominated]
    listed = {r.key for r, _ in rows}
    shown: set[str] = set()
    for r, mark in rows:
        if r.key in shown:
            continue
        same = [k for k in r.same_as if k in listed]  # one row per student, under every rule that yields it
        shown.update(same)
        row = r.row(target)
        ci = "" if row["ao_ci_low"] is None else f"{100 * row['ao_ci_low']:.1f}-{100 * row['ao_ci_high']:.1f}"
        table.add_row(
            mark + " = ".join([r.key, *same]), f"{100 * row['ao']:.1f}", ci, f"{100 * row['sr50']:.1f}", f"{100 * row['auc']:.1f}",
            f"{row['frame_ms']:.2f}", f"{row['template_ms']:.2f}", f"{row['gmacs_per_frame']:.1f}", f"{row['params_m']:.1f}",
        )
    return table


def _workers(args: argparse.Namespace) -> int:
    """``--workers``, else the experiment's; more than one per CPU only with ``--force`` (each loads the data)."""
    import os

    from prunesearch.errors import PrunesearchError
    from prunesearch.search.experiment import load_experiment

    workers, where = args.workers, "--workers"
    if workers is None:
        exp = load_experiment(args.experiment)
        workers, where = exp.search.workers, f"{exp.path}: search.workers"
    cpus = os.cpu_count() or 1
    if workers > cpus and not args.force:
        raise PrunesearchError(f"{where}: {workers} worker processes on {cpus} CPUs; use at most {cpus}, or pass --force")
    return workers


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (default: the experiment's, else auto: "
                   "CUDA when available)")


def add_crop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template-factor", type=float, metavar="F", help="template crop side / sqrt(w*h) "
                   "(default: the checkpoint's, else 2)")
    p.add_argument("--search-factor", type=float, metavar="F", help="search crop side / sqrt(w*h) "
                   "(default: the checkpoint's, else 4; OSTrack-384 uses 5)")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunesearch.data.processing import CropGeometry
    from prunesearch.devices import parse_gpus
    from prunesearch.search.pricing import template_policy
    from prunesearch.search.runner import run_search
    from prunesearch.search.setup import RunRequest

    console = Console()
    CropGeometry().override(args.template_factor, args.search_factor)  # a bad factor fails here
    req = RunRequest(
        targets=tuple(args.target), budget=args.budget, experiment=args.experiment, trials=args.trials,
        workers=_workers(args), storage=args.storage, seed=args.seed, teacher=args.teacher, data=args.data,
        workdir=args.workdir, template_update=args.template_update, device=args.device, gpus=parse_gpus(args.gpus),
        template_factor=args.template_factor, search_factor=args.search_factor,
    )
    with RichDisplay(console) as display:
        report = run_search(req, display)
    setup = report.setup
    scale = setup.info.accuracy_scale
    console.print(f"experiment {setup.experiment.name} ({setup.experiment.path}); teacher: {setup.info.teacher}; data: {setup.info.data}")
    console.print(f"[bold yellow]{SCALE_NOTE[scale]}[/]" if scale == SMALL_SCALE else SCALE_NOTE[scale])
    console.print(f"latency: {template_policy(setup.book.template_update)}")
    for line in setup.book.pricer.warnings():
        console.print(line, style="bold yellow", markup=False)
    stage = report.confirmation
    for target, front in report.fronts.items():
        which = "Pareto front" if stage is None else (
            f"Confirmed Pareto front ({stage.settings.steps} more steps x {stage.settings.seeds} seed(s), {stage.sequences} sequences)")
        title = f"{which} on {target}, budget {setup.budget.text} ({scale} accuracy scale; {template_policy(setup.book.template_update)})"
        console.print(front_table(front, target, title, report.ties.get(target, [])))
        if stage is not None:
            console.print(f"brief front on {target}: {', '.join(r.key for r in report.brief_fronts[target]) or 'none'}")
            for key, why in report.dropped.get(target, {}).items():
                console.print(f"  dropped by the confirmation: {key}: {why}", markup=False)
    for key, message in sorted(report.given_up.items()):
        console.print(f"skipped {key}: its fine-tune failed {setup.experiment.search.retries + 1} times (last: {message})")
    if report.missing_models:
        console.print(f"front members trained on another machine (checkpoint not here): {', '.join(report.missing_models)}")
    t, c = report.times, report.counts
    if report.stopped:
        console.print(f"stopped early: {report.stopped}", markup=False)
    if c.reused.get(c.SAME):
        console.print(f"{c.reused[c.SAME]} candidate(s) are the same student as another rule's and reused its fine-tune")
    if c.reused.get(c.EARLIER):
        console.print(f"reused {c.reused[c.EARLIER]} fine-tune(s) from earlier searches")
    work = sum(c.seconds.get(k, 0.0) for k in ("finetune", "evaluate", "checkpoint"))
    console.print(
        f"strategy {report.plan.strategy}; {t.total:.0f} s: pricing {t.pricing:.1f} s, data {t.data:.1f} s, "
        f"fine-tune + evaluation {work:.0f} s, export {t.export:.1f} s, logging "
        f"{t.log_search + c.seconds.get('log_candidate', 0.0):.1f} s"
    )
    console.print(f"MLflow: {report.tracking_uri} (experiment {setup.experiment.name}, run {report.parent_run}); "
                  f"study {setup.info.study} in {report.storage}")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunesearch.errors import PrunesearchError
    from prunesearch.search.mlflow_runs.read import comparable, pick_stage, read_results, stopped_early
    from prunesearch.mlflow_log.store import tracking_uri
    from prunesearch.outputs import check_output
    from prunesearch.search.budget import parse_budget
    from prunesearch.search.plot import pareto_plot
    from prunesearch.search.confirm import dropped as dropped_by
    from prunesearch.search.results import compare, front_for, fronts_and_ties, statuses
    from prunesearch.search.verification import reprice

    if not 0.0 < args.level < 1.0:
        raise PrunesearchError(f"--level must lie strictly between 0 and 1 (e.g. 0.95), got {args.level}")
    budget_ms = parse_budget(args.budget).ms if args.budget else None
    plot = Path(args.plot) if args.plot else None
    if plot is not None:
        if not plot.parent.is_dir():
            raise PrunesearchError(f"--plot {args.plot}: folder {plot.parent} does not exist")
        check_output(plot, "--plot")  # before reading the store: a place that cannot be written is refused now
    uri = tracking_uri()  # read with client(create=False): a folder never searched gets no empty store
    everything = read_results(uri, args.experiment, args.study)
    if not everything:
        raise PrunesearchError(f"experiment {args.experiment!r} in {uri} has no fine-tuned candidates yet")
    stored = pick_stage(everything, args.stage, args.experiment)
    stage = stored[0].stage
    targets = sorted({t for s in stored for t in s.result.latency_ms})
    # Accuracy does not depend on the device: a target the runs were not priced on re-prices what was trained.
    table = _table_to_reprice(args.experiment, args.target, targets) if args.target and args.target not in targets else None
    if args.target:
        targets = [table.name if table else args.target]

    def pool(results: list, target: str) -> list:
        return reprice(results, table, args.experiment, args.allow_mixed).results if table else \
            comparable(results, target, args.allow_mixed)

    fronts, pools, ties, dropped = {}, {}, {}, {}
    for target in targets:
        pools[target] = pool(stored, target)
        front, tied = fronts_and_ties(pools[target], [target], budget_ms, args.level)
        fronts[target], ties[target] = front[target], tied[target]
        if stage == CONFIRM:
            brief = front_for(pool([s for s in everything if s.stage == BRIEF], target), target, budget_ms)
            dropped[target] = dropped_by(brief, fronts[target], pools[target], target, {})
    line = reprice(stored, table, args.experiment, args.allow_mixed).line() if table else None
    scales = sorted({r.accuracy_scale for pool in pools.values() for r in pool})
    where = {s.result.run_id: {"checkpoint": s.checkpoint, "model_uri": s.model_uri} for s in stored}
    if args.compare:
        by_key = {r.key: r for pool in pools.values() for r in pool}
        unknown = [k for k in args.compare if k not in by_key]
        if unknown:
            raise PrunesearchError(f"--compare: no fine-tuned candidate {unknown[0]!r}; known: {', '.join(sorted(by_key))}")
        result = compare(by_key[args.compare[0]], by_key[args.compare[1]], args.level)
        print(json.dumps(result.to_dict(), indent=2) if args.json else result.verdict())
        return 0
    status = {t: statuses(pools[t], fronts[t], ties[t]) for t in targets}
    # --all: the dominated candidates too.
    dominated = {t: [r for r in sorted(pools[t], key=lambda r: r.latency_ms[t]) if status[t][r.key] == "dominated"]
                 if args.all else [] for t in targets}

    def front_rows(t: str) -> list[dict[str, object]]:
        return [{**r.row(t, status[t][r.key]), **where[r.run_id]} for r in fronts[t] + ties[t] + dominated[t]]

    if args.json:
        print(json.dumps({"experiment": args.experiment, "stage": stage, "accuracy_scale": ",".join(scales), "level": args.level,
                          **({"repriced": line} if line else {}),
                          "candidates" if args.all else "fronts": {t: front_rows(t) for t in targets},
                          **({"dropped": dropped} if stage == CONFIRM else {})}, indent=2))
    elif args.csv:
        import csv

        if line:
            print(line, file=sys.stderr)
        rows = [row for t in targets for row in front_rows(t)]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["candidate"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        console = Console()
        if line:
            console.print(line, markup=False)
        stopped = stopped_early(uri, args.experiment, args.study) if stage == BRIEF else []  # none in a confirmation
        for target, front in fronts.items():
            count = f"{len(pools[target]) + len(stopped)} fine-tuned"
            if stopped:
                count += f", {len(stopped)} of them stopped early"
            which = "confirmed Pareto front" if stage == CONFIRM else "Pareto front"
            title = f"{args.experiment}: {which} on {target} ({count}; accuracy scale {', '.join(scales)})"
            console.print(front_table(front, target, title, ties[target], dominated[target]))
            for key, why in dropped.get(target, {}).items():
                console.print(f"  dropped by the confirmation: {key}: {why}", markup=False)
        if stage == BRIEF and any(s.stage == CONFIRM for s in everything):
            console.print("brief-stage results; without --stage brief, pareto shows the confirmed front")
        for scale in scales:
            console.print(SCALE_NOTE.get(scale, f"accuracy scale: {scale}"))
    if plot is not None:
        # The budget the runs were searched under, unless --budget asks about another.
        searched = {r.budget_ms for pool in pools.values() for r in pool}
        line_ms = budget_ms if budget_ms is not None else (searched.pop() if len(searched) == 1 else None)
        for target in targets:
            path = plot if len(targets) == 1 else plot.with_name(f"{plot.stem}_{target}{plot.suffix or '.png'}")
            pareto_plot(pools[target], target, path, line_ms, tied={r.key for r in ties[target]})
            print(f"plot: {path}", file=sys.stderr)
    return 0


def _table_to_reprice(experiment: str, target: str, searched: list[str]):  # noqa: ANN202 - a LatencyTable
    """The table ``target`` names; none is one line saying what the runs were priced on and which tables there are."""
    from prunesearch.errors import InputError, PrunesearchError
    from prunesearch.latency.registry import known_targets, table_path
    from prunesearch.latency.table import read_table

    try:
        path = table_path(target)
    except InputError:
        raise PrunesearchError(f"no run of {experiment!r} was priced on {target!r}; priced on: {', '.join(searched)}; and no "
                               f"latency table {target!r} to re-price with (tables: {', '.join(known_targets())}, or a .yaml path)"
                               ) from None
    return read_table(path)


def cmd_ui(args: argparse.Namespace) -> int:
    import os
    import signal
    import time
    import warnings

    from prunesearch.errors import PrunesearchError, PrunesearchWarning
    from prunesearch.mlflow_log.store import client, review_experiment, tracking_uri
    from prunesearch.mlflow_log.ui_server import WORKFLOW_QUERY, check_options, runs_url, serve
    from prunesearch.search.mlflow_runs.read import latest_search_run

    # Options first: a refused one must not create or open the store.
    no_auth = check_options(args.host, args.port, args.workers, args.allow_remote)
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        raise PrunesearchError(f"MLFLOW_TRACKING_URI is a tracking server ({uri}): open it in a browser instead of 'prunesearch ui'")
    mlflow_client = client(uri, create=False)
    experiment_id = review_experiment(mlflow_client, args.experiment)
    # The latest search's parent run: its description, front table, plots and verification are one glance away.
    parent = latest_search_run(mlflow_client, experiment_id) if experiment_id is not None else None
    if no_auth:
        warnings.warn(no_auth, PrunesearchWarning, stacklevel=1)

    def stop(signum, frame):  # noqa: ANN001, ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    with serve(uri, args.host, args.port, args.workers) as server:
        server.wait_ready()
        shown = server.base_url.replace("//0.0.0.0:", "//127.0.0.1:")
        url = f"{shown}/#/experiments/{experiment_id}/runs/{parent}?{WORKFLOW_QUERY}" if parent else runs_url(shown, experiment_id)
        print(f"MLflow UI: {url}\n(store {uri}; Ctrl-C stops the server)", flush=True)
        graphical = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform == "darwin"
        if args.browser or (args.browser is None and graphical):
            import webbrowser

            webbrowser.open(url)
        try:
            while server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        raise PrunesearchError(f"the MLflow server stopped with code {server.process.returncode}: {server.last_line()}")
