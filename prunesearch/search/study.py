"""The Optuna study behind a search: its storage, what its trials hold, and recovering lost trials.

Every fact the workers share lives in the study (trial user attributes), so this module is the
one that knows their names: ``candidate``, ``worker`` (host:pid), ``claimed``, ``outcome``,
``result`` (steps, seconds, blocks, accuracy, checkpoint, MLflow run id) and ``rung_<step>``.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from prunesearch.errors import PrunesearchError
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate

DIRECTIONS = ("maximize", "minimize")
HEARTBEAT_S = 20
GRACE_S = 90
# Outcomes that settle a candidate: it is never trained again.
SETTLED = ("trained", "early_stopped", "diverged")
# Outcomes of trials that cost nothing: proposals recorded without a fine-tune.
SKIPPED = ("outside_space", "over_budget", "duplicate", "surplus")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 120}} if sqlite else {},
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to the study storage; heartbeats let any worker fail and re-enqueue a lost machine's trial."""
    sqlite = url.startswith("sqlite")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        try:
            storage = _rdb_storage(url, sqlite)
        except sqlalchemy.exc.IntegrityError:
            # Another process created the schema at the same moment (workers or machines starting
            # on a new storage); it exists now, so a second connection finds it.
            storage = _rdb_storage(url, sqlite)
    except ImportError:
        raise PrunesearchError(
            f"the study storage {redact(url)} needs a database driver that is not installed "
            "(PostgreSQL: pip install psycopg2-binary; MySQL: pip install pymysql)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(f"cannot open the study storage {redact(url)}: {first}") from None
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
        storage.engine.dispose()
    return storage


def open_study(storage: str | optuna.storages.RDBStorage, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the study, or load it to resume: the same name in the same storage is the same search."""
    if isinstance(storage, str):
        storage = open_storage(storage)
    return optuna.create_study(
        storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True
    )


def trial_key(t: FrozenTrial) -> str | None:
    """The candidate a trial holds, or will hold once a worker takes it from the queue."""
    if "candidate" in t.user_attrs:
        return t.user_attrs["candidate"]
    fixed = t.system_attrs.get("fixed_params")
    return Candidate(**fixed).key if t.state == TrialState.WAITING and fixed else None


@dataclass
class StudyState:
    """Which candidates a study has settled, is training, and has queued."""

    settled: set[str]
    running: set[str]
    queued: set[str]

    @classmethod
    def read(cls, study: optuna.Study, exclude: int | None = None) -> "StudyState":
        settled, running, queued = set(), set(), set()
        for t in study.get_trials(deepcopy=False):
            if t.number == exclude:
                continue
            key = trial_key(t)
            outcome = t.user_attrs.get("outcome")
            if outcome in SETTLED:
                settled.add(key)
            elif t.state == TrialState.RUNNING and t.user_attrs.get("claimed") and outcome is None:
                running.add(key)
            elif t.state == TrialState.WAITING and key:
                queued.add(key)
        return cls(settled, running, queued)

    @property
    def claimed(self) -> set[str]:
        return self.settled | self.running


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study) -> list[str]:
    """Fail this machine's trials whose process is gone and enqueue every interrupted candidate again.

    Returns the candidates enqueued. Trials of live processes (another run sharing the study) and
    of other machines (left to the heartbeat) are not touched.
    """
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if name == host and pid.isdigit() and not _pid_alive(int(pid)):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    state = StudyState.read(study)
    again = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = trial_key(t)
        if t.user_attrs.get("outcome") in SETTLED or not key or key in state.claimed | state.queued:
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        state.queued.add(key)
        again.append(key)
    return again


def trained_results(study: optuna.Study, book: PriceBook, accuracy_scale: str) -> list[CandidateResult]:
    """Every candidate the study trained to the end, latest trial per candidate, priced from ``book``."""
    latest: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("outcome") == "trained":
            latest[t.user_attrs["candidate"]] = t
    results = []
    for key, t in sorted(latest.items()):
        cand = Candidate(**t.params)
        prices = book.prices[key]
        results.append(
            CandidateResult(
                key=key,
                depth=cand.depth,
                ai_layers=cand.ai_layers,
                rule=cand.rule,
                accuracy=dict(t.user_attrs["result"]["accuracy"]),
                latency_ms={x: p.priced_ms for x, p in prices.items()},
                template_ms={x: p.template_ms for x, p in prices.items()},
                budget_ms=book.budget.ms,
                gmacs_per_frame=book.costs[key].gmacs_per_frame,
                params_m=book.costs[key].params_m,
                accuracy_scale=accuracy_scale,
                blocks=list(t.user_attrs["result"]["blocks"]),
                run_id=t.user_attrs["result"]["run_id"],
                trial=t.number,
            )
        )
    return results


def study_summary(study: optuna.Study, since: datetime | None = None) -> dict[str, float]:
    """Counts of outcomes and the seconds fine-tunes spent, by phase, for trials started ``since``."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False):
        if since is not None and (t.datetime_start is None or t.datetime_start < since):
            continue
        outcome = t.user_attrs.get("outcome", "running" if t.state == TrialState.RUNNING else str(t.state.name).lower())
        out[f"trials.{outcome}"] = out.get(f"trials.{outcome}", 0) + 1
        result = t.user_attrs.get("result", {})
        for phase, seconds in result.get("seconds", {}).items():
            out[f"seconds.{phase}"] = out.get(f"seconds.{phase}", 0.0) + seconds
        out["finetune_steps"] = out.get("finetune_steps", 0) + result.get("steps", 0)
    return out
