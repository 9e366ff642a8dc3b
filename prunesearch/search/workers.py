"""The worker processes of one machine: what every worker does (:func:`work`), and how the
coordinating process (itself worker 0) starts, relays and stops the others (:func:`run_workers`).

Workers share nothing but the study and the MLflow parent run: each is spawned with the command
line, builds its own :class:`~prunesearch.search.setup.Setup`, and sends its progress through a
queue to the coordinator's display. A worker dies with its coordinator (``kill -9`` included) and
ends its trial and run on SIGTERM as on Ctrl-C, so a resume re-runs what it held.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Protocol

import optuna
import torch

from prunesearch.errors import PrunesearchError
from prunesearch.search.confirm import ConfirmStage, confirm
from prunesearch.search.controller import Plan, Progress, SearchController
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.samplers import make_sampler
from prunesearch.search.setup import RunRequest, Setup, prepare
from prunesearch.search.study.reuse import TrainedIndex
from prunesearch.search.study.storage import open_study

PR_SET_PDEATHSIG = 1


class Display(Progress, Protocol):
    """What the terminal shows while the workers run."""

    def begin(self, plan: Plan, steps: int, workers: int) -> None: ...

    def confirm(self, stage: ConfirmStage) -> None: ...


def sampler(setup: Setup, index: int) -> optuna.samplers.BaseSampler:
    """Each worker its own sampler seed, so workers do not propose in lockstep."""
    search = setup.experiment.search
    return make_sampler(search.sampler, seed=setup.experiment.seed * 100 + index, population=(search.trials or len(setup.book.feasible())) // 2)


def work(setup: Setup, storage: str, study: optuna.Study, log: SearchLog, plan: Plan, progress: Progress, index: int,
         announce: Callable[[ConfirmStage], None] | None = None, trained: TrainedIndex | None = None) -> ConfirmStage | None:
    """What every worker does: the brief stage, then, where the experiment asks, the confirmation
    (``announce(stage)`` is told before it starts). ``trained``: the storage's earlier fine-tunes,
    where the caller has read them already."""
    exp = setup.experiment
    SearchController(study, setup.book, exp.space, setup.teacher.depth, exp.search, plan, setup.trainer(), log, progress,
                     setup.training, index, trained).work()
    if exp.confirm is None:
        return None
    return confirm(setup, exp.confirm, storage, study, log, progress, index, announce)


class QueueProgress:
    """Progress events of a worker process, sent to the coordinator's display."""

    def __init__(self, events: Queue) -> None:
        self.events = events

    def started(self, worker: int, key: str, steps: int) -> None:
        self.events.put(("started", worker, key, steps))

    def stepped(self, worker: int, done: int) -> None:
        self.events.put(("stepped", worker, done))

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None:
        self.events.put(("finished", worker, key, outcome, ao))

    def reused(self, worker: int, key: str, source: str, outcome: str, ao: float | None) -> None:
        self.events.put(("reused", worker, key, source, outcome, ao))


def interrupt_on_term() -> None:
    """``kill`` (SIGTERM) ends a trial the way Ctrl-C does, so it is marked and re-run on resume."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def die_with(parent: int) -> None:
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


def _worker(
    req: RunRequest, uri: str, storage: str, parent_id: str, plan: Plan, index: int, threads: int, events: Queue, parent: int
) -> None:
    """Entry point of a worker process (spawned): same setup, same study, same parent run."""
    interrupt_on_term()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with(parent)
    torch.set_num_threads(threads)
    try:
        setup = prepare(req, storage, index)
        study = open_study(storage, setup.info.study, sampler(setup, index), setup.book.primary)
        log = SearchLog(uri, setup.info, setup.book, parent_id)
        work(setup, storage, study, log, plan, QueueProgress(events), index)
    except PrunesearchError as err:
        events.put(("error", index, str(err)))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _relay(events: Queue, display: Display, errors: list[str], stop: threading.Event) -> None:
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


def run_workers(
    setup: Setup, req: RunRequest, uri: str, storage: str, study: optuna.Study, log: SearchLog, plan: Plan, workers: int,
    display: Display, trained: TrainedIndex | None = None,
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
        stage = work(setup, storage, study, log, plan, display, 0, display.confirm, trained)
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
