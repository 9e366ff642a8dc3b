"""``prunesearch run`` end to end: the one place where the search's parts are put together.

The coordinating process reads the experiment, prices the space, loads teacher and data, opens
(or resumes) the Optuna study, starts the MLflow parent run, then works on the study itself
(``--workers 1``) or starts K worker processes that do the same setup and share the study. When
the workers are done it computes the front per target over the whole study, exports the front
members (checkpoint + ONNX) into their MLflow runs, and closes the parent run.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

import optuna
import torch

from prunesearch.data.processing import CropGeometry
from prunesearch.data.sequence import Sequence
from prunesearch.devices import resolve_device, resolve_precision, worker_device
from prunesearch.errors import PrunesearchError
from prunesearch.mlflow_log.store import default_study_storage, is_remote, tracking_uri
from prunesearch.models.vit_tracker import JointTracker, TrackerConfig
from prunesearch.search.budget import Budget, parse_budget
from prunesearch.search import confirm
from prunesearch.search.candidate import CandidateTrainer, ConfirmTrainer, export_onnx
from prunesearch.search.controller import Plan, Progress, SearchController, plan_search
from prunesearch.search.experiment import ConfirmSettings, DataSpec, Experiment, load_experiment
from prunesearch.checkpoints import LoadedTracker, load_checkpoint, load_tracker
from prunesearch.mlflow_log.tracker_model import TrackerModel
from prunesearch.search.plot import FULL_SCALE, ReferencePoint
from prunesearch.search.space import Candidate
from prunesearch.search.pricing import LatencyTablePricer, PriceBook
from prunesearch.search.record import data_fingerprint, file_sha256, reproducibility_record
from prunesearch.search.results import CandidateResult, fronts_and_ties
from prunesearch.search.study import (
    StudyCounts,
    StudyState,
    checkpoints,
    heartbeat,
    make_sampler,
    open_storage,
    open_study,
    redact,
    trained_results,
)
from prunesearch.search.tracking import SearchInfo, SearchLog

# Fields that make two trackers the same architecture for accuracy purposes.
_ARCH_FIELDS = ("embed_dim", "num_heads", "mlp_ratio", "patch_size", "template_size", "search_size", "depth")


@dataclass(frozen=True)
class RunRequest:
    """The command line of ``prunesearch run``; ``None`` means "as the experiment file says"."""

    targets: tuple[str, ...]
    budget: str
    experiment: str = "b4-b9"
    trials: int | None = None
    workers: int | None = None
    storage: str | None = None
    seed: int | None = None
    teacher: str | None = None
    data: str | None = None
    workdir: str | None = None
    template_update: int | None = None
    device: str | None = None  # --device: the fine-tunes' and evaluations' device
    gpus: tuple[int, ...] = ()  # --gpus: the GPUs the workers take one each
    template_factor: float | None = None  # --template-factor / --search-factor over the teacher's
    search_factor: float | None = None


@dataclass
class RunTimes:
    """Wall seconds of the parts of one invocation; the fine-tunes' own split is in :class:`StudyCounts`."""

    setup: float = 0.0
    pricing: float = 0.0
    teacher: float = 0.0
    data: float = 0.0
    study: float = 0.0
    log_search: float = 0.0
    search: float = 0.0
    export: float = 0.0
    total: float = 0.0
    _clock: float = field(default_factory=time.perf_counter, repr=False)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def lap(self, part: str) -> None:
        """Add the seconds since the last lap to ``part``; ``total`` is always since the start."""
        now = time.perf_counter()
        setattr(self, part, getattr(self, part) + now - self._clock)
        self._clock = now
        self.total = now - self._start

    def metrics(self) -> dict[str, float]:
        return {f"seconds.{f.name}": getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


class Display(Progress, Protocol):
    """What the terminal shows while the workers run."""

    def begin(self, plan: Plan, steps: int, workers: int, settled: int) -> None: ...

    def confirm(self, stage: ConfirmStage) -> None: ...


@dataclass
class Setup:
    """Everything one process needs to work on the search (built again in each worker process)."""

    experiment: Experiment
    budget: Budget
    book: PriceBook
    teacher: JointTracker
    train: list[Sequence]
    val: list[Sequence]
    finetune_config: Any
    info: SearchInfo
    workdir: Path
    times: RunTimes
    crop: CropGeometry = field(default_factory=CropGeometry)
    eval_device: str | None = None

    def trainer(self) -> CandidateTrainer:
        return CandidateTrainer(
            self.teacher, self.train, self.val, self.finetune_config, self.workdir, self.crop, self.eval_device,
            real_data=self.experiment.data.path is not None,
        )


def same_architecture(a: TrackerConfig, b: TrackerConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _ARCH_FIELDS)


def load_teacher(exp: Experiment, device: str = "cpu") -> tuple[LoadedTracker, str]:
    """The experiment's teacher on ``device`` (a joint tracker, with the crop geometry and format
    of its file), and the sha256 of its file."""
    from prunesearch.teacher import SHIPPED_TEACHER, load_shipped_teacher

    if exp.teacher_checkpoint is None:
        return LoadedTracker(load_shipped_teacher().to(device), None, "prunesearch"), file_sha256(SHIPPED_TEACHER)
    loaded = load_tracker(exp.teacher_checkpoint, device=device)
    if not isinstance(loaded.model, JointTracker):
        raise PrunesearchError(
            f"teacher checkpoint {exp.teacher_checkpoint} holds a {loaded.model.kind} model; the teacher must be a joint (OSTrack-style) tracker"
        )
    return loaded, file_sha256(exp.teacher_checkpoint)


def load_data(spec: DataSpec) -> tuple[list[Sequence], list[Sequence]]:
    """Training and validation sequences: the dataset's splits, or built-in sequences (made once, cached)."""
    train, val = _split(spec, "train", spec.train_sequences), load_val(spec, spec.val_sequences)
    if not train or not val:
        raise PrunesearchError(f"{spec.path} holds no sequences in split {spec.train_split!r} or {spec.val_split!r}")
    return train, val


def load_val(spec: DataSpec, count: int) -> list[Sequence]:
    """The first ``count`` validation sequences (fewer if the split is smaller): a longer list
    starts with a shorter one's, so the confirmation stage scores the brief stage's sequences too."""
    return _split(spec, "val", count)


def _split(spec: DataSpec, which: str, count: int | None) -> list[Sequence]:
    if spec.path is None:
        from prunesearch.data.synthetic import builtin_sequences

        return builtin_sequences(which, count=count)
    from prunesearch.data import open_dataset

    return open_dataset(spec.path, spec.train_split if which == "train" else spec.val_split, count, spec.bad_frames)


def study_identity(experiment: str, teacher_fp: str, data_fp: str, book: PriceBook, budget: Budget) -> str:
    """What makes two runs the same study: a re-profiled or re-derived table, or another template
    schedule, prices differently, so it starts a new study instead of silently resuming the old one."""
    tables = ",".join(f"{t}={book.table_hashes[t]}" for t in book.targets)
    return "|".join((experiment, teacher_fp, data_fp, tables, repr(budget.ms), f"template_update={book.template_update}"))


def prepare(req: RunRequest, storage: str, index: int = 0, times: RunTimes | None = None) -> Setup:
    """Read, check, price and load, cheapest checks first so bad input fails in a second.

    ``index`` is the worker this setup is for: with several GPUs, each worker takes its own.
    """
    times = times or RunTimes()
    if not req.targets:
        raise PrunesearchError("give at least one --target")
    exp = load_experiment(req.experiment).with_overrides(req.teacher, req.data, req.seed, req.trials)
    budget = parse_budget(req.budget)
    finetune_config = exp.finetune_config()
    device = worker_device(req.device or finetune_config.device, req.gpus, index)
    finetune_config = dataclasses.replace(finetune_config, device=device)
    eval_device = worker_device(req.device or exp.evaluation_device or device, req.gpus, index)
    resolve_precision(finetune_config.precision, resolve_device(device), "finetune.precision")
    times.lap("setup")
    pricer = LatencyTablePricer(tuple(dict.fromkeys(req.targets)), exp.arch, req.template_update)
    times.lap("pricing")
    loaded, teacher_fp = load_teacher(exp, device)
    teacher = loaded.model
    if finetune_config.heatmap == "auto":
        # The student learns its teacher's target: OSTrack's for external teachers.
        external = loaded.source_format != "prunesearch"
        finetune_config = dataclasses.replace(finetune_config, heatmap="ostrack" if external else "prunesearch")
    crop = (loaded.crop or CropGeometry()).override(req.template_factor, req.search_factor)
    times.lap("teacher")
    book = PriceBook(exp.candidates(teacher.depth), pricer, budget, exp.arch)
    book.require_feasible(exp.name)
    times.lap("pricing")
    train, val = load_data(exp.data)
    data_fp = data_fingerprint(train, val)
    times.lap("data")
    identity = study_identity(exp.identity(), teacher_fp, data_fp, book, budget)
    if crop != CropGeometry():
        identity += f"|crop {crop.template_factor} {crop.search_factor}"
    study = f"{exp.name}/{'+'.join(book.targets)}/{budget.text}/{hashlib.sha256(identity.encode()).hexdigest()[:10]}"
    root = Path(req.workdir) if req.workdir else Path.cwd() / "runs"
    workdir = root.resolve() / study.replace("/", "-")
    info = SearchInfo(
        experiment=exp.name,
        study=study,
        storage=redact(storage),
        targets=book.targets,
        budget=budget,
        architecture=exp.architecture,
        teacher=exp.teacher_label,
        teacher_fingerprint=teacher_fp,
        data=exp.data.label,
        data_fingerprint=data_fp,
        seed=exp.seed,
        accuracy_scale="full" if same_architecture(teacher.cfg, exp.arch) else "small",
        finetune=dataclasses.asdict(finetune_config) | {"crop": crop.to_dict()},
        table_hashes=book.table_hashes,
        template_update=book.template_update,
        workdir=str(workdir),
    )
    return Setup(exp, budget, book, teacher, train, val, finetune_config, info, workdir, times, crop, eval_device)


class QueueProgress:
    """Progress events of a worker process, sent to the coordinator's display."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def started(self, worker: int, key: str, steps: int) -> None:
        self.events.put(("started", worker, key, steps))

    def stepped(self, worker: int, done: int) -> None:
        self.events.put(("stepped", worker, done))

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None:
        self.events.put(("finished", worker, key, outcome, ao))


def _interrupt_on_term() -> None:
    """``kill`` (SIGTERM) ends a trial the way Ctrl-C does, so it is marked and re-run on resume."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """End this worker (SIGTERM: it marks its trial and run and exits) when its coordinator dies.

    Linux tells us at once (``PR_SET_PDEATHSIG``), whatever killed the parent, even ``kill -9``;
    a thread watching the parent pid covers other systems and a parent gone before the call.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="prunesearch-parent-watch", daemon=True).start()


def _controller(setup: Setup, study: optuna.Study, log: SearchLog, plan: Plan, progress: Progress, index: int) -> SearchController:
    exp = setup.experiment
    return SearchController(
        study, setup.book, exp.space, setup.teacher.depth, exp.search, plan, setup.trainer(), log, progress, index
    )


@dataclass(frozen=True)
class ConfirmStage:
    """The confirmation stage of one search (see :mod:`prunesearch.search.confirm`)."""

    settings: ConfirmSettings  # resolved: steps and sequences as numbers
    study: optuna.Study
    plan: Plan
    members: list[str]
    sequences: int  # validation sequences it scores (the split may hold fewer than asked)
    settled: int  # members confirmed before this invocation


def _stages(setup: Setup, storage: str, study: optuna.Study, log: SearchLog, plan: Plan, progress: Progress, index: int,
            announce: Callable[[ConfirmStage], None] | None = None) -> ConfirmStage | None:
    """What every worker does: the brief stage, then, where the experiment asks, the confirmation
    (``announce(stage)`` is told before it starts)."""
    _controller(setup, study, log, plan, progress, index).work()
    exp = setup.experiment
    if exp.confirm is None:
        return None
    settings = exp.confirm.resolved(setup.finetune_config.steps, exp.data.val_sequences)
    results = trained_results(study, setup.book, setup.info.accuracy_scale)
    members = confirm.members(*fronts_and_ties(results, setup.book.targets, setup.budget.ms))
    val = load_val(exp.data, settings.val_sequences)
    name = confirm.study_name(setup.info.study, settings, data_fingerprint(setup.train, val))
    confirm_study = open_study(storage, name, make_sampler("random", exp.seed * 100 + index, 1), setup.book.primary)
    book = setup.book.only(members)
    search = dataclasses.replace(exp.search, strategy="enumerate", seeds=(), early_stop=None)
    settled = len(StudyState.read(confirm_study, search.retries).finished)
    stage = ConfirmStage(settings, confirm_study, plan_search(confirm_study, book, search), members, len(val), settled)
    if announce is not None:
        announce(stage)
    config = dataclasses.replace(setup.finetune_config, steps=settings.steps, seeds=settings.seeds)
    trainer = ConfirmTrainer(
        checkpoints(study), setup.finetune_config.seeds, setup.teacher, setup.train, val, config, setup.workdir,
        setup.crop, setup.eval_device, real_data=exp.data.path is not None,
    )
    stage_log = log.for_stage(confirm.CONFIRM, {**dataclasses.asdict(settings), "val_sequences": len(val)})
    SearchController(confirm_study, book, exp.space, setup.teacher.depth, search, stage.plan, trainer, stage_log,
                     progress, index).work()
    return stage


def confirmation_markdown(stage: ConfirmStage, brief_fronts: dict[str, list[CandidateResult]],
                          dropped: dict[str, dict[str, str]]) -> str:
    """How the front was confirmed, the brief front, and what the confirmation dropped, per target."""
    s = stage.settings
    lines = [f"**Confirmed front**: {len(stage.members)} candidates (the brief front and those tied with it) fine-tuned "
             f"{s.steps} more steps x {s.seeds} seed(s) from their brief checkpoints, scored on {stage.sequences} sequences "
             "(child runs tagged `stage: confirm`)."]
    for target, front in brief_fronts.items():
        lines.append(f"- brief front on {target}: {', '.join(r.key for r in front) or 'none'}")
        lines += [f"  - dropped {key}: {why}" for key, why in dropped.get(target, {}).items()]
    return "\n".join(lines)


def _sampler(exp: Experiment, index: int) -> optuna.samplers.BaseSampler:
    """Each worker its own sampler seed, so workers do not propose in lockstep."""
    return make_sampler(exp.search.sampler, seed=exp.seed * 100 + index, population=exp.search.trials // 2)


def _worker(
    req: RunRequest, uri: str, storage: str, parent_id: str, plan: Plan, index: int, threads: int, events: Any, parent: int
) -> None:
    """Entry point of a worker process (spawned): same setup, same study, same parent run."""
    _interrupt_on_term()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with(parent)
    torch.set_num_threads(threads)
    try:
        setup = prepare(req, storage, index)
        study = open_study(storage, setup.info.study, _sampler(setup.experiment, index), setup.book.primary)
        log = SearchLog(uri, setup.info, setup.book, parent_id)
        _stages(setup, storage, study, log, plan, QueueProgress(events), index)
    except PrunesearchError as err:
        events.put(("error", index, str(err)))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _relay(events: Any, display: Display, errors: list[str], stop: threading.Event) -> None:
    """Hand the worker processes' progress events to the display, until told to stop and drained."""
    while not (stop.is_set() and events.empty()):
        try:
            kind, index, *rest = events.get(timeout=0.2)
        except queue_module.Empty:
            continue
        if kind == "error":
            errors.append(f"worker {index}: {rest[0]}")
        else:
            getattr(display, kind)(index, *rest)


def _run_workers(
    setup: Setup, req: RunRequest, uri: str, storage: str, study: optuna.Study, log: SearchLog, plan: Plan, workers: int,
    display: Display,
) -> ConfirmStage | None:
    """This process is worker 0; workers 1..K-1 are spawned processes on the same study."""
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [
        ctx.Process(
            target=_worker,
            args=(req, uri, storage, log.parent_id, plan, i, threads, events, os.getpid()),
            name=f"prunesearch-worker-{i}",
        )
        for i in range(1, workers)
    ]
    # A worker ignores Ctrl-C until it is ready (else one landing while it imports prints a
    # traceback); the coordinator stops it with SIGTERM, which it handles from its first line.
    own_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, own_sigint)
    errors: list[str] = []
    stop = threading.Event()
    relay = threading.Thread(target=_relay, args=(events, display, errors, stop), daemon=True)
    relay.start()
    own_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stage = _stages(setup, storage, study, log, plan, display, 0, display.confirm)
        for p in procs:
            p.join()
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker marks its trial and run interrupted and exits
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        torch.set_num_threads(own_threads)
        stop.set()
        relay.join()
    if errors:
        raise PrunesearchError("; ".join(errors))
    failed = [f"{p.name} exited with {p.exitcode}" for p in procs if p.exitcode]
    if failed:
        raise PrunesearchError(f"{', '.join(failed)}; run the same command again to resume")
    return stage


@dataclass
class RunReport:
    """What ``prunesearch run`` prints at the end."""

    setup: Setup
    plan: Plan
    storage: str
    tracking_uri: str
    parent_run: str
    fronts: dict[str, list[CandidateResult]]
    times: RunTimes
    counts: StudyCounts
    missing_models: list[str]
    given_up: dict[str, str]  # candidate -> its last error, after search.retries retries
    ties: dict[str, list[CandidateResult]] = field(default_factory=dict)  # per target, see tied_for
    # With a confirmation stage, ``fronts`` and ``ties`` are the confirmed ones; these the brief
    # stage's, and why each brief front member fell off the confirmed front, per target.
    confirmation: ConfirmStage | None = None
    brief_fronts: dict[str, list[CandidateResult]] = field(default_factory=dict)
    dropped: dict[str, dict[str, str]] = field(default_factory=dict)


def reference_points(setup: Setup) -> dict[str, list[ReferencePoint]]:
    """The experiment's published variants at the latency each target's table prices them."""
    out: dict[str, list[ReferencePoint]] = {}
    for target in setup.book.targets:
        out[target] = [
            ReferencePoint(r.label, r.ao, setup.book.pricer.price(r.candidate)[target].priced_ms)
            for r in setup.experiment.reference
        ]
    return out


def teacher_ms(setup: Setup) -> dict[str, float]:
    """The unpruned teacher's per-frame price on each target (every block joint), drawn on the plot."""
    depth = setup.teacher.depth
    return {t: p.priced_ms for t, p in setup.book.pricer.price(Candidate(depth, depth)).items()}


def _export_front(setup: Setup, log: SearchLog, fronts: dict[str, list[CandidateResult]], trials: dict[str, str]) -> list[str]:
    """Every front member not yet logged, as an MLflow model (ONNX pair and checkpoint); returns
    those whose checkpoint is not on this machine."""
    missing = []
    members = {r.key: r for front in fronts.values() for r in front}
    for key, r in sorted(members.items()):
        if log.models([r]):
            continue
        checkpoint = trials.get(key)
        if not checkpoint or not Path(checkpoint).is_file():
            missing.append(key)
            continue
        cfg = load_checkpoint(checkpoint).cfg
        with tempfile.TemporaryDirectory() as tmp:
            template, frame = export_onnx(checkpoint, Path(tmp))
            log.log_model(r.run_id, TrackerModel(
                experiment=setup.info.experiment, candidate=key, checkpoint=Path(checkpoint), template_onnx=template,
                frame_onnx=frame, template_size=cfg.template_size, search_size=cfg.search_size,
                stand_in=setup.info.accuracy_scale != FULL_SCALE,
                config={**dataclasses.asdict(cfg), **r.row(setup.book.primary), "accuracy_scale": setup.info.accuracy_scale},
            ))
    return missing


def study_storage(uri: str, storage: str | None) -> str:
    """The study storage to use with the MLflow store ``uri``: machines share both or neither.

    A tracking server with a local SQLite study would give every machine its own study, each
    training everything into one experiment; a shared study with a local MLflow store would
    scatter the runs. Both are refused.
    """
    if storage is None:
        if is_remote(uri):
            raise PrunesearchError(
                f"MLFLOW_TRACKING_URI is the shared store {uri} but no --storage was given: every machine would "
                "run its own study in ./optuna.db; pass the same --storage postgresql://USER:PASSWORD@HOST/DB on every machine"
            )
        return default_study_storage(uri)
    if is_remote(storage) and not is_remote(uri):
        raise PrunesearchError(
            f"--storage {redact(storage)} is shared but MLflow logs to the local store {uri}; "
            "set MLFLOW_TRACKING_URI to the shared MLflow server (http://HOST:5000) on every machine"
        )
    if is_remote(uri) and not is_remote(storage):
        raise PrunesearchError(
            f"MLFLOW_TRACKING_URI is the shared store {uri} but --storage {redact(storage)} is local to this machine; "
            "pass a shared --storage postgresql://USER:PASSWORD@HOST/DB on every machine"
        )
    return storage


def run_search(req: RunRequest, display: Display) -> RunReport:
    """Run (or resume) the search the request describes; returns the fronts and the time split."""
    times, started = RunTimes(), datetime.now()
    _interrupt_on_term()
    uri = tracking_uri()
    storage = study_storage(uri, req.storage)
    setup = prepare(req, storage, times=times)  # every input is checked before the storage (a new SQLite file) is created
    study_storage_ = open_storage(storage)  # a bad URL or a missing driver fails before any fine-tune
    exp = setup.experiment
    study = open_study(study_storage_, setup.info.study, _sampler(exp, 0), setup.book.primary)
    with heartbeat(study, exp.search.heartbeat_s):
        plan = plan_search(study, setup.book, exp.search)
        times.lap("study")
        record = reproducibility_record(exp.seed, setup.book.table_hashes, setup.info.data_fingerprint, setup.info.teacher_fingerprint)
        log = SearchLog.start(uri, setup.info, setup.book, plan.strategy, record)
        times.lap("log_search")
        try:
            return _search_and_report(setup, req, uri, storage, study, log, plan, display, times, started)
        except KeyboardInterrupt:
            log.stop("KILLED")
            raise
        except BaseException:
            log.stop("FAILED")
            raise


def _search_and_report(
    setup: Setup, req: RunRequest, uri: str, storage: str, study: optuna.Study, log: SearchLog, plan: Plan,
    display: Display, times: RunTimes, started: datetime,
) -> RunReport:
    """Everything after the parent run exists: any way out of here ends that run."""
    exp = setup.experiment
    workers = req.workers or exp.search.workers
    display.begin(plan, setup.finetune_config.steps * setup.finetune_config.seeds, workers,
                  len(StudyState.read(study, exp.search.retries).finished))
    times.lap("log_search")
    if workers == 1:
        stage = _stages(setup, storage, study, log, plan, display, 0, display.confirm)
    else:
        stage = _run_workers(setup, req, uri, storage, study, log, plan, workers, display)
    times.lap("search")
    targets, budget_ms = setup.book.targets, setup.budget.ms
    results = trained_results(study, setup.book, setup.info.accuracy_scale)
    fronts, ties = fronts_and_ties(results, targets, budget_ms)
    log.mark_front(results, fronts, ties)
    brief_fronts, dropped, shown, given_up = fronts, {}, study, StudyState.read(study, exp.search.retries).given_up
    if stage is not None:
        shown = stage.study
        results = trained_results(stage.study, setup.book, setup.info.accuracy_scale)
        fronts, ties = fronts_and_ties(results, targets, budget_ms)
        log.mark_front(results, fronts, ties)
        failed = StudyState.read(stage.study, exp.search.retries).given_up
        dropped = {t: confirm.dropped(brief_fronts[t], fronts[t], results, t, failed) for t in targets}
        given_up = {**given_up, **{f"{k} (confirmation)": v for k, v in failed.items()}}
    times.lap("log_search")
    missing = _export_front(setup, log, fronts, checkpoints(shown))
    times.lap("export")
    counts = StudyCounts.of(study, since=started)
    if stage is not None:
        counts = counts.plus(StudyCounts.of(stage.study, since=started))
    log.finish(fronts, results, times.metrics() | counts.metrics(), reference_points(setup), ties, teacher_ms(setup),
               plan.strategy, "" if stage is None else confirmation_markdown(stage, brief_fronts, dropped))
    times.lap("log_search")
    return RunReport(setup, plan, setup.info.storage, uri, log.parent_id, fronts, times, counts, missing, given_up, ties,
                     stage, brief_fronts, dropped)
