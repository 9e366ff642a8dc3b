"""Stores that an interruption cannot break and that are checked when opened, and a tracking server
that does not answer: real processes, real MLflow and Optuna stores, a real ``mlflow server``.

* kill -9 and Ctrl-C swept through the creation of a fresh ``mlflow.db`` (while its temporary file
  exists), and a full disk during creation: never a half-made ``mlflow.db``; a clean run afterwards
  creates it whole. The store MLflow itself leaves on a full disk is recognised as half-created.
* an empty, text, garbage-header, truncated or damaged store is one line naming it, and is left as
  it was (never replaced by an empty store).
* a stopped server, and one that accepts connections and never answers, are one line naming it
  within the deadline.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from prunesearch.errors import InputError, StorageError
from prunesearch.mlflow_log.store import HTTP_DEFAULTS, client, filter_value
from prunesearch.sqlite_store import CREATING, check_sqlite_store, ensure_sqlite_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CREATE = "from prunesearch.mlflow_log.store import client; client('sqlite:///mlflow.db'); print('created')"


@pytest.fixture(autouse=True)
def _deadline_env(monkeypatch):
    """client() sets MLflow's HTTP defaults in the environment; keep them from leaking into other tests."""
    for key in HTTP_DEFAULTS:
        monkeypatch.setenv(key, os.environ.get(key, HTTP_DEFAULTS[key]))


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1", **extra)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(f".mlflow.db{CREATING}*"))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> bytes:
    """The bytes of a whole MLflow store holding one experiment and one run."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in HTTP_DEFAULTS.items():
            mp.setenv(key, value)
        mlflow_client = client(f"sqlite:///{folder / 'mlflow.db'}")
        run = mlflow_client.create_run(mlflow_client.create_experiment("x"))
        mlflow_client.log_metric(run.info.run_id, "ao", 0.5)
    return (folder / "mlflow.db").read_bytes()


@pytest.mark.slow
def test_kill_and_ctrl_c_during_creation_never_leave_a_half_store(tmp_path):
    """Three creations at once, each signalled a moment after its temporary file appears."""
    plan = [(signal.SIGKILL, 0.0), (signal.SIGKILL, 0.3), (signal.SIGINT, 0.1)]
    children = []
    for i in range(len(plan)):
        (tmp_path / str(i)).mkdir()
        children.append(subprocess.Popen([sys.executable, "-c", CREATE], cwd=tmp_path / str(i), env=_env(),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    started: dict[int, float] = {}  # when each child's temporary file appeared (or the child ended)
    signalled: set[int] = set()
    deadline = time.monotonic() + 180
    while len(signalled) < len(plan) and time.monotonic() < deadline:
        now = time.monotonic()
        for i, (sig, delay) in enumerate(plan):
            if i not in started and (_temporaries(tmp_path / str(i)) or children[i].poll() is not None):
                started[i] = now
            if i in started and i not in signalled and now >= started[i] + delay:
                if children[i].poll() is None:
                    children[i].send_signal(sig)
                signalled.add(i)
        time.sleep(0.002)
    landed = []
    for i, (sig, _) in enumerate(plan):
        folder = tmp_path / str(i)
        children[i].communicate(timeout=60)
        if not (folder / "mlflow.db").exists():
            landed.append(sig)
        else:  # the creation was complete before the signal: then the store is whole
            check_sqlite_store(folder / "mlflow.db", "the MLflow store")
        if sig == signal.SIGINT:
            assert _temporaries(folder) == []  # Ctrl-C removes its own temporary file
        # A clean run afterwards creates the store whole and removes what the killed one left.
        assert client(f"sqlite:///{folder / 'mlflow.db'}").search_experiments() and _temporaries(folder) == []
    assert signal.SIGKILL in landed, "no kill landed inside the creation window"


def _fill_disk_during_creation(folder: Path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a process whose files cannot grow past 200 KB (as on a full disk); SQLite sees write errors."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=_env(), capture_output=True, text=True,
                          timeout=120, preexec_fn=limit)


def test_a_full_disk_during_creation_is_one_line_and_leaves_nothing(tmp_path):
    done = _fill_disk_during_creation(tmp_path, CREATE.replace("print('created')", "") + "\n")
    assert done.returncode != 0 and "StorageError: cannot create the MLflow store mlflow.db" in done.stderr
    assert not (tmp_path / "mlflow.db").exists() and _temporaries(tmp_path) == []
    assert client(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()


def test_the_store_mlflow_itself_half_creates_is_recognised(tmp_path):
    """What MLflow's own creation in place leaves on a full disk: one line saying to delete it."""
    done = _fill_disk_during_creation(tmp_path, "from mlflow import MlflowClient; MlflowClient(tracking_uri='sqlite:///mlflow.db')")
    assert done.returncode != 0 and (tmp_path / "mlflow.db").stat().st_size > 0
    with pytest.raises(StorageError, match=r"was left half-created by an interrupted run \(schema \w+ of \w+\); "
                                           "it holds no runs: delete it and run the same command again"):
        client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_an_older_schema_with_runs_says_how_to_upgrade(tmp_path, store):
    import sqlite3

    path = tmp_path / "mlflow.db"
    path.write_bytes(store)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    with pytest.raises(StorageError, match=r"has an older MLflow schema \(451aebb31d03.*mlflow db upgrade sqlite:///"):
        client(f"sqlite:///{path}")


def _damaged(store: bytes) -> dict[str, bytes]:
    noise = random.Random(0).randbytes(8192)
    middle = len(store) // 2
    return {
        "empty": b"",
        "text": b"experiment results, see the wiki\n" * 40,
        "header": b"X" * 16 + store[16:],
        "truncated": store[: len(store) // 2],
        "middle": store[:middle] + noise + store[middle + len(noise):],
    }


@pytest.mark.parametrize("kind,expect", [
    ("empty", "is empty (0 bytes)"),
    ("text", "is not a SQLite database"),
    ("header", "is not a SQLite database"),
    ("truncated", "is truncated"),
    ("middle", "is damaged (SQLite quick_check"),
])
def test_a_damaged_store_is_one_line_and_left_as_it_was(tmp_path, store, kind, expect):
    path = tmp_path / "mlflow.db"
    path.write_bytes(_damaged(store)[kind])
    before = path.read_bytes()
    with pytest.raises(StorageError) as err:
        client(f"sqlite:///{path}")
    message = str(err.value)
    assert expect in message and str(path) in message and "\n" not in message
    assert "restore" in message or "delete" in message
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def test_pareto_on_an_empty_store_is_one_line(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "prunesearch", "pareto", "--experiment", "x"], cwd=tmp_path,
                          env=_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"), capture_output=True,
                          text=True, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "is empty (0 bytes)" in err, err
    assert (tmp_path / "mlflow.db").stat().st_size == 0


def test_a_missing_store_is_not_created_when_only_read(tmp_path):
    with pytest.raises(StorageError, match="there is no MLflow store at"):
        client(f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}", create=False)
    assert not (tmp_path / "no").exists()


# --- the Optuna study storage, through the same functions ------------------------------------


def _optuna_tables(url: str) -> None:
    optuna.storages.RDBStorage(url).engine.dispose()


def test_study_storage_created_whole_and_an_empty_one_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert ensure_sqlite_store(url, "the study storage", _optuna_tables) == tmp_path / "optuna.db"
    optuna.create_study(storage=url, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert ensure_sqlite_store(url, "the study storage", _optuna_tables) == tmp_path / "optuna.db"  # checked, kept
    (tmp_path / "optuna.db").write_bytes(b"")
    with pytest.raises(StorageError, match=r"the study storage .*optuna.db is empty \(0 bytes\).*not taken as a new store"):
        ensure_sqlite_store(url, "the study storage", _optuna_tables)
    assert (tmp_path / "optuna.db").stat().st_size == 0


def test_an_interrupted_study_creation_leaves_nothing(tmp_path):
    def interrupted(url: str) -> None:
        _optuna_tables(url)
        raise KeyboardInterrupt

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(KeyboardInterrupt):
        ensure_sqlite_store(url, "the study storage", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db.lock"]
    ensure_sqlite_store(url, "the study storage", _optuna_tables)
    assert optuna.get_all_study_summaries(url) == []


def test_the_search_opens_its_study_through_the_same_checks(tmp_path):
    from prunesearch.search.study.storage import open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_storage(url).engine.dispose()  # created whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db", "optuna.db.lock"]
    (tmp_path / "optuna.db").write_bytes(b"")
    with pytest.raises(StorageError, match=r"optuna.db is empty \(0 bytes\)"):
        open_storage(url)
    assert (tmp_path / "optuna.db").stat().st_size == 0


def test_pareto_in_a_folder_never_searched_creates_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "prunesearch", "pareto", "--experiment", "x"], cwd=tmp_path,
                          env=_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"), capture_output=True,
                          text=True, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "no MLflow store at" in err, err
    assert list(tmp_path.iterdir()) == []


# --- a tracking server that does not answer -------------------------------------------------


def _pareto(uri: str, folder: Path, **env: str) -> tuple[int, str, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "prunesearch", "pareto", "--experiment", "x"], cwd=folder,
                          env=_env(MLFLOW_TRACKING_URI=uri, **env), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr.strip(), time.monotonic() - start


@pytest.mark.servers
def test_a_stopped_tracking_server_is_one_line_within_the_deadline(tmp_path):
    from tests.support.servers import MlflowServer

    server = MlflowServer.launch()
    try:
        server.wait()
        client(server.uri).create_experiment("x")
    finally:
        server.stop()
    code, err, seconds = _pareto(server.uri, tmp_path)
    assert code == 2 and "\n" not in err and f"the MLflow tracking server {server.uri} did not answer (connection refused" in err, err
    assert seconds < 60  # interpreter start-up included; MLflow's own defaults retry for minutes


def test_a_server_that_never_answers_is_one_line_after_the_users_deadline(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, err, seconds = _pareto(uri, tmp_path, MLFLOW_HTTP_REQUEST_TIMEOUT="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
    assert code == 2 and "\n" not in err and f"{uri} did not answer (no answer within 1 s, 1 retries)" in err, err
    assert seconds < 60


def test_a_client_that_got_no_answer_asks_no_more(monkeypatch):
    """A search cut off from its server ends its runs on the way out: each call would wait out the deadline again."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        answering = client(f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(StorageError, match="no answer within 1 s") as first:
            answering.search_experiments()
        start = time.monotonic()
        with pytest.raises(StorageError) as again:
            answering.set_terminated("0" * 32, "FAILED")
    assert time.monotonic() - start < 0.5 and str(again.value) == str(first.value)


def test_filter_values_with_quotes():
    assert filter_value("plain") == "'plain'" and filter_value("o'x") == "\"o'x\""
    with pytest.raises(InputError, match="both kinds of quote"):
        filter_value("a'b\"c")
