"""Which worker processes of a study are alive.

Every process that works on a study beats (``alive.<worker>`` study attributes) every
``heartbeat_s`` seconds from a thread. A worker whose last beat is older than ``grace_s`` seconds
(or, on the same machine and pid namespace, whose pid is gone) is lost; :mod:`.recovery` ends its
trials and :class:`~prunesearch.search.mlflow_runs.log.SearchLog` its MLflow runs.

Why not Optuna's own heartbeat (``RDBStorage(heartbeat_interval, grace_period)`` with
``fail_stale_trials``): it beats per trial, and only inside ``study.optimize`` (``study.ask``
outside it warns that the heartbeat is meant for ``optimize``), while the controller asks and tells
itself so that every way out of a trial is its own. It knows nothing of processes: a ``kill -9``
on this machine is found here at once from the pid, there only after the grace period; a trial
asked by a process killed before its first beat has no beat row and is never stale there (see
``ORPHAN_S`` in :mod:`.recovery`); and a worker's beat also vouches for what it holds outside any
trial (the parent MLflow run of a search, a worker waiting for others). The price of our own beats:
they are wall-clock times of each machine, so machines sharing a study need clocks within
``grace_s`` of each other (NTP gives milliseconds).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from prunesearch.processes import pid_alive

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
