"""The Optuna study behind a search: its storage, the trial record, process liveness, recovery.

Every fact the workers share lives in the study, so this module is the only one that reads or
writes trial user attributes, through :class:`TrialRecord`. The record of a trial says which
candidate it holds, which worker process holds it (:class:`WorkerId`), whether it has claimed the
candidate, its MLflow child run, its rung losses, and, once it settles, its outcome and result.

Liveness: every process that works on a study beats (``alive.<worker>`` study attributes) every
``heartbeat_s`` seconds from a thread. A worker whose last beat is older than ``grace_s`` seconds
(or, on the same machine and pid namespace, whose pid is gone) is lost: its RUNNING trials are
failed and their candidates re-queued once (:func:`recover`). A worker that only missed beats and
finishes later finds its trial failed and discards its result (``record.settle`` refuses it).

Extending the record: add a field with
a default to :class:`TrialRecord`, read it in :meth:`TrialRecord.of` and write it through a
method of :class:`TrialRecord`'s writers below; nothing else names trial attributes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, Trial, TrialState

from prunesearch.errors import PrunesearchError
from prunesearch.processes import pid_alive
from prunesearch.sqlite_lock import creation_lock
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate

DIRECTIONS = ("maximize", "minimize")
# Outcomes that settle a candidate: it is never trained again.
SETTLED = ("trained", "early_stopped", "diverged")
# Outcomes of trials that cost nothing: proposals recorded without a fine-tune.
SKIPPED = ("outside_space", "over_budget", "duplicate", "surplus")
# A fine-tune that raised: retried up to ``retries`` times (search settings), then given up.
FAILED = "failed"
ALIVE = "alive."


def _scope() -> str:
    """Processes that can see each other's pids: one kernel boot and one pid namespace."""
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:
            parts.append(socket.gethostname())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class WorkerId:
    """One process working on a study; ``uid`` makes it unique across machines and containers."""

    host: str
    pid: int
    scope: str
    uid: str

    @classmethod
    def new(cls) -> "WorkerId":
        return cls(socket.gethostname(), os.getpid(), _scope(), uuid.uuid4().hex[:12])

    @classmethod
    def parse(cls, text: str) -> "WorkerId | None":
        host, _, rest = text.rpartition("@")
        pid, _, rest = rest.partition(":")
        scope, _, uid = rest.partition(":")
        return cls(host, int(pid), scope, uid) if pid.isdigit() and uid else None

    def __str__(self) -> str:
        return f"{self.host}@{self.pid}:{self.scope}:{self.uid}"


_THIS: WorkerId | None = None


def this_worker() -> WorkerId:
    """This process's id (a spawned or forked worker gets its own)."""
    global _THIS
    if _THIS is None or _THIS.pid != os.getpid():
        _THIS = WorkerId.new()
    return _THIS


@dataclass(frozen=True)
class Liveness:
    """Which workers of a study are alive, as of one reading of their beats."""

    beats: dict[str, float]
    grace_s: float
    now: float = field(default_factory=time.time)

    @classmethod
    def read(cls, study: optuna.Study, grace_s: float) -> "Liveness":
        attrs = study.user_attrs
        return cls({k[len(ALIVE):]: float(v) for k, v in attrs.items() if k.startswith(ALIVE)}, grace_s)

    def alive(self, worker: str) -> bool:
        wid = WorkerId.parse(worker)
        if wid is not None and wid.scope == this_worker().scope and not pid_alive(wid.pid):
            return False
        return self.now - self.beats.get(worker, 0.0) <= self.grace_s


class Heartbeat:
    """Beats for this process in a thread, from the first (written at once) until ``stop``."""

    def __init__(self, study: optuna.Study, every_s: float) -> None:
        self.study, self.every_s = study, every_s
        self.key = ALIVE + str(this_worker())
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="prunesearch-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self.study.set_user_attr(self.key, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is what the grace period is for
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


_BEATING: dict[tuple[int, str], Heartbeat] = {}


@contextmanager
def heartbeat(study: optuna.Study, every_s: float) -> Iterator[None]:
    """This process beats on ``study`` while inside; nested uses for one study (runner, then
    controller) share one thread, and each study (the brief one, its confirmation) has its own."""
    key = (os.getpid(), study.study_name)
    if key in _BEATING:
        yield
        return
    _BEATING[key] = Heartbeat(study, every_s)
    try:
        yield
    finally:
        _BEATING.pop(key).stop()


@dataclass(frozen=True)
class TrialRecord:
    """What one trial holds, read from its Optuna trial; the only reader of trial user attributes."""

    number: int
    state: TrialState
    candidate: str | None = None  # also for a queued trial, from its fixed parameters
    worker: str | None = None  # str(WorkerId)
    claimed: bool = False
    run_id: str | None = None  # MLflow child run, created when the fine-tune starts
    rungs: dict[int, float] = field(default_factory=dict)  # early-stopping score per rung step
    outcome: str | None = None
    message: str | None = None  # why it failed, or why it was stopped early
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    blocks: tuple[int, ...] = ()
    checkpoint: str | None = None
    sequences: dict | None = None  # per-sequence scores of a trained candidate (SequenceStats.to_dict())
    values: tuple[float, ...] = ()  # the objectives, kept so a recovered trial can be completed
    retry_of: int | None = None
    started: datetime | None = None
    params: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, t: FrozenTrial) -> "TrialRecord":
        a = t.user_attrs
        candidate = a.get("candidate")
        fixed = t.system_attrs.get("fixed_params")
        if candidate is None and t.state == TrialState.WAITING and fixed:
            candidate = Candidate(**fixed).key
        result = a.get("result", {})
        return cls(
            number=t.number,
            state=t.state,
            candidate=candidate,
            worker=a.get("worker"),
            claimed=bool(a.get("claimed")),
            run_id=a.get("run_id"),
            rungs={int(k[len("rung_"):]): float(v) for k, v in a.items() if k.startswith("rung_")},
            outcome=a.get("outcome"),
            message=a.get("message"),
            steps=int(result.get("steps", 0)),
            seconds=dict(result.get("seconds", {})),
            accuracy=dict(result.get("accuracy", {})),
            blocks=tuple(result.get("blocks", ())),
            checkpoint=result.get("checkpoint"),
            sequences=result.get("sequences"),
            values=tuple(result.get("values", ())),
            retry_of=a.get("retry_of"),
            started=t.datetime_start,
            params=dict(t.params or fixed or {}),
        )

    @property
    def settled(self) -> bool:
        return self.outcome in SETTLED

    @property
    def holding(self) -> bool:
        """Claimed and training: the candidate is held until this trial settles or is failed."""
        return self.state == TrialState.RUNNING and self.claimed and self.outcome is None


def records(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]


class TrialWriter:
    """Writes one running trial's record, field by field as the trial goes (the only writer)."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def take(self, cand: Candidate, worker: WorkerId) -> None:
        self.trial.set_user_attr("candidate", cand.key)
        self.trial.set_user_attr("worker", str(worker))

    def claim(self) -> None:
        self.trial.set_user_attr("claimed", True)

    def run(self, run_id: str) -> None:
        self.trial.set_user_attr("run_id", run_id)

    def rung(self, step: int, score: float) -> None:
        self.trial.set_user_attr(f"rung_{step}", score)

    def stopping(self, reason: str) -> None:
        """Why the fine-tune is being stopped early (the outcome follows when it settles)."""
        self.trial.set_user_attr("message", reason)

    def skip(self, outcome: str) -> None:
        self.trial.set_user_attr("outcome", outcome)

    def fail(self, outcome: str, message: str) -> None:
        """``interrupted`` or ``failed``, with the reason; the candidate may be queued again."""
        self.trial.set_user_attr("message", message)
        self.trial.set_user_attr("outcome", outcome)

    def settle(self, outcome: str, steps: int, seconds: dict[str, float], accuracy: dict[str, float],
               blocks: tuple[int, ...], checkpoint: str | None, values: tuple[float, ...],
               sequences: dict | None = None) -> TrialRecord:
        """Store a finished fine-tune: the result first, the outcome (which settles it) last.

        Raises :class:`optuna.exceptions.UpdateFinishedTrialError` when the trial was failed as
        lost meanwhile (its candidate re-queued): the caller discards its result.
        """
        result = {"steps": steps, "seconds": seconds, "accuracy": accuracy, "blocks": list(blocks),
                  "checkpoint": checkpoint, "values": list(values), "sequences": sequences}
        self.trial.set_user_attr("result", result)
        self.trial.set_user_attr("outcome", outcome)
        return TrialRecord.of(self.trial.study._storage.get_trial(self.trial._trial_id))


def enqueue(study: optuna.Study, cand: Candidate | dict[str, object], **origin: object) -> None:
    """Queue a candidate; ``origin`` says why (``seed``, ``instead_of``, ``retry_of``)."""
    params = cand.params if isinstance(cand, Candidate) else cand
    study.enqueue_trial(params, user_attrs=origin)


def make_sampler(name: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    """Multi-objective sampler; workers pass different seeds so they do not propose in lockstep."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, population), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5, constant_liar=True)


def _sqlite_connect(dbapi_connection: object, record: object) -> None:
    """Let SQLAlchemy, not pysqlite, open transactions; WAL journal with fsync at checkpoints only."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sqlalchemy.engine.Connection) -> None:
    """Every transaction takes the write lock first (SQLAlchemy's pysqlite recipe).

    pysqlite runs a SELECT outside any transaction and starts one only at the UPDATE, so two
    processes could both read a queued trial as WAITING and both take it; with ``BEGIN IMMEDIATE``
    Optuna's read-check-update runs whole or waits.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def redact(url: str) -> str:
    """A storage URL fit for logs: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _rdb_storage(url: str, sqlite: bool) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}} if sqlite else {})


# Schema creation racing with another process on a server database: the loser sees one of these.
_SCHEMA_RACE = ("already exists", "duplicate key", "unique constraint", "integrityerror")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to the study storage; safe when several processes create it at the same moment."""
    sqlite = url.startswith("sqlite")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with creation_lock(url):
            for attempt in range(5):
                try:
                    storage = _rdb_storage(url, sqlite)
                    break
                except sqlalchemy.exc.SQLAlchemyError as err:
                    # Another process created the schema at the same moment; it exists now.
                    if attempt == 4 or not any(s in repr(err).lower() for s in _SCHEMA_RACE):
                        raise
                    time.sleep(0.2 * (attempt + 1))
    except ImportError:
        raise PrunesearchError(
            f"the study storage {redact(url)} needs a database driver that is not installed "
            "(PostgreSQL: pip install 'psycopg[binary]'; MySQL: pip install pymysql)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(f"cannot open the study storage {redact(url)}: {first}") from None
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
        storage.engine.dispose()
    return storage


def open_study(
    storage: str | optuna.storages.RDBStorage, name: str, sampler: optuna.samplers.BaseSampler, primary: str = "target"
) -> optuna.Study:
    """Create the study, or load it to resume: the same name in the same storage is the same search.

    The objectives are named (``ao``, ``latency_ms.<primary target>``) for optuna-dashboard.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    study = optuna.create_study(
        storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True
    )
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["ao", f"latency_ms.{primary}"])
    return study


@dataclass
class StudyState:
    """Which candidates a study has settled, is training, has queued, and has given up on."""

    settled: set[str]
    running: set[str]
    queued: set[str]
    given_up: dict[str, str]  # candidate -> last failure message

    @classmethod
    def read(cls, study: optuna.Study, retries: int, exclude: int | None = None) -> "StudyState":
        return cls.of([r for r in records(study) if r.number != exclude], retries)

    @classmethod
    def of(cls, recs: list[TrialRecord], retries: int) -> "StudyState":
        settled, running, queued = set(), set(), set()
        failures: Counter[str] = Counter()
        last: dict[str, str] = {}
        for r in recs:
            if r.settled:
                settled.add(r.candidate)
            elif r.holding:
                running.add(r.candidate)
            elif r.state == TrialState.WAITING and r.candidate:
                queued.add(r.candidate)
            if r.outcome == FAILED:
                failures[r.candidate] += 1
                last[r.candidate] = r.message or ""
        given_up = {k: last[k] for k, n in failures.items() if n > retries and k not in settled | running}
        return cls(settled, running, queued, given_up)

    @property
    def claimed(self) -> set[str]:
        return self.settled | self.running | set(self.given_up)

    @property
    def finished(self) -> set[str]:
        """Candidates nobody will train again."""
        return self.settled | set(self.given_up)


# A worker records itself on its trial milliseconds after asking for it; a trial without a worker
# this much older was asked by a process killed in between (waiting a whole grace period for it
# would let a resume finish with it still RUNNING).
ORPHAN_S = 10.0


def fail_lost(study: optuna.Study, live: Liveness) -> list[TrialRecord]:
    """End the RUNNING trials of lost workers; returns the records of the trials ended.

    A lost trial that had settled (its worker died while logging) is completed from its record,
    so its candidate is never trained again; any other is failed.
    """
    ended = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rec = TrialRecord.of(t)
        orphan = rec.worker is None and rec.started is not None and (
            live.now - rec.started.timestamp() > min(live.grace_s, ORPHAN_S)
        )
        if not (orphan or (rec.worker is not None and not live.alive(rec.worker))):
            continue
        if rec.outcome == "trained" and rec.values:
            study.tell(t.number, list(rec.values), skip_if_finished=True)
        elif rec.outcome == "early_stopped":
            study.tell(t.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        ended.append(rec)
    return ended


def recover(study: optuna.Study, live: Liveness, retries: int) -> list[str]:
    """Fail lost trials, then queue every unfinished candidate of a failed trial again, once.

    Returns the candidates queued. A candidate whose fine-tune raised more than ``retries``
    times is not queued again (see :attr:`StudyState.given_up`).
    """
    fail_lost(study, live)
    recs = records(study)
    state = StudyState.of(recs, retries)
    retried = {r.retry_of for r in recs if r.retry_of is not None}
    again = []
    for r in recs:
        if r.state != TrialState.FAIL or r.settled or not r.candidate or r.number in retried:
            continue
        if r.candidate in state.claimed | state.queued:
            continue
        enqueue(study, r.params, retry_of=r.number)
        state.queued.add(r.candidate)
        again.append(r.candidate)
    return again


def trained_results(study: optuna.Study, book: PriceBook, accuracy_scale: str) -> list[CandidateResult]:
    """Every candidate the study trained to the end, latest trial per candidate, priced from ``book``."""
    latest: dict[str, TrialRecord] = {}
    for r in records(study):
        if r.outcome == "trained":
            latest[r.candidate] = r
    results = []
    for key, r in sorted(latest.items()):
        cand = Candidate(**r.params)
        prices = book.prices[key]
        results.append(
            CandidateResult(
                key=key,
                depth=cand.depth,
                ai_layers=cand.ai_layers,
                rule=cand.rule,
                accuracy=dict(r.accuracy),
                latency_ms={x: p.priced_ms for x, p in prices.items()},
                template_ms={x: p.template_ms for x, p in prices.items()},
                budget_ms=book.budget.ms,
                gmacs_per_frame=book.costs[key].gmacs_per_frame,
                params_m=book.costs[key].params_m,
                accuracy_scale=accuracy_scale,
                blocks=list(r.blocks),
                run_id=r.run_id or "",
                trial=r.number,
                sequences=r.sequences,
            )
        )
    return results


def checkpoints(study: optuna.Study) -> dict[str, str]:
    """Candidate -> checkpoint file of its latest trained trial (on whichever machine trained it)."""
    return {r.candidate: r.checkpoint for r in records(study) if r.outcome == "trained" and r.checkpoint}


@dataclass(frozen=True)
class StudyCounts:
    """Outcomes and fine-tune work of the trials of one invocation (what the end of a run reports)."""

    outcomes: dict[str, int]
    seconds: dict[str, float]  # by phase: finetune, evaluate, checkpoint, log_candidate
    finetune_steps: int

    @classmethod
    def of(cls, study: optuna.Study, since: datetime | None = None) -> "StudyCounts":
        outcomes: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        steps = 0
        for r in records(study):
            if since is not None and (r.started is None or r.started < since):
                continue
            outcomes[r.outcome or ("running" if r.state == TrialState.RUNNING else r.state.name.lower())] += 1
            seconds.update(r.seconds)
            steps += r.steps
        return cls(dict(outcomes), dict(seconds), steps)

    def plus(self, other: "StudyCounts") -> "StudyCounts":
        """Both counts together (a brief stage and its confirmation)."""
        return StudyCounts(dict(Counter(self.outcomes) + Counter(other.outcomes)),
                           dict(Counter(self.seconds) + Counter(other.seconds)), self.finetune_steps + other.finetune_steps)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {f"trials.{k}": v for k, v in self.outcomes.items()}
        out.update({f"seconds.{k}": v for k, v in self.seconds.items()})
        out["finetune_steps"] = self.finetune_steps
        return out
