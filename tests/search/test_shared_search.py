"""Sharing a search safely: stores created by several processes at once, a shared MLflow store
with a local study refused, a full disk, a lost worker's MLflow runs closed, workers that die with
their coordinator. Real PostgreSQL and MLflow server (tests/support/servers.py), real processes.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from prunesearch.checkpoints import save_checkpoint
from prunesearch.cli.main import main
from prunesearch.errors import PrunesearchError
from prunesearch.models import build_teacher, get_preset
from prunesearch.search.controller import plan_search
from prunesearch.search.study.storage import study_storage
from prunesearch.search.space import Candidate
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.study.liveness import WorkerId
from prunesearch.search.study.record import TrialWriter, records
from tests.support.search_support import ListSink, ScriptedTrainer, controller, make_book, search_info, settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

OPEN_BOTH = """
import sys
from prunesearch.mlflow_log.store import client
from prunesearch.search.samplers import make_sampler
from prunesearch.search.study.storage import open_study
client(sys.argv[1]).search_experiments()
for url in sys.argv[2:]:
    open_study(url, "race", make_sampler("random", 0, 2))
print("ok")
"""


@pytest.mark.slow
def test_four_processes_creating_the_stores_at_once_leave_them_whole(tmp_path, postgres):
    """Observed: two runs started together crashed in MLflow's migration and left mlflow.db half-made."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storages = [f"sqlite:///{tmp_path / 'optuna.db'}", postgres.database("race")]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_BOTH, uri, *storages], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert all(o.strip().endswith("ok") and "Traceback" not in o for o in outs)
    tables = {r[0] for r in sqlite3.connect(tmp_path / "mlflow.db").execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "experiments" in tables and not [t for t in tables if t.startswith("_alembic_tmp")]
    assert MlflowClient(uri).search_experiments()


def test_a_shared_mlflow_store_with_a_local_study_is_refused_in_one_line(monkeypatch, capsys, tmp_path):
    """Observed: every machine ran its own ./optuna.db study and trained everything into one experiment."""
    with pytest.raises(PrunesearchError, match=r"no --storage was given: every machine would run its own study"):
        study_storage("http://mlflow:5000", None)
    with pytest.raises(PrunesearchError, match=r"--storage sqlite:///optuna.db is local to this machine"):
        study_storage("http://mlflow:5000", "sqlite:///optuna.db")
    with pytest.raises(PrunesearchError, match=r"postgresql://me:\*\*\*@db/x is shared but MLflow logs to the local store"):
        study_storage("sqlite:///mlflow.db", "postgresql://me:pw@db/x")
    assert study_storage("http://mlflow:5000", "postgresql://db/x") == "postgresql://db/x"
    assert study_storage(f"sqlite:///{tmp_path}/mlflow.db", None) == f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert main(["run", "--target", "orin-nx", "--budget", "10ms"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass the same --storage postgresql://" in err


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: a real "no space left on device" (needs root to mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                                         capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_folder_and_leaves_no_temporary_file(full_disk):
    """Observed: a 376-line chained traceback and a 2 MB .pt.tmp left behind."""
    model = build_teacher(get_preset("small"))
    with pytest.raises(PrunesearchError) as err:
        save_checkpoint(model, full_disk / "runs" / "B3-1-first.pt")
    message = str(err.value)
    assert message.startswith(f"no space left in {full_disk / 'runs'} (writing B3-1-first.pt)")
    assert "\n" not in message
    assert list((full_disk / "runs").iterdir()) == []


class _DiskFull(ScriptedTrainer):
    def run(self, cand, on_step):  # noqa: ANN001
        raise PrunesearchError("no space left in /somewhere (writing x.pt); free some space and run the same command again to resume")


def test_a_machine_problem_stops_the_worker_with_its_line_and_marks_trial_and_run(tmp_path):
    book = make_book("6ms")
    sink = ListSink()
    ctl = controller(f"sqlite:///{tmp_path / 'optuna.db'}", book, settings(trials=8), None, _DiskFull(), sink)
    ctl.plan = plan_search(ctl.study, book, settings(trials=8), ctl.students)
    with pytest.raises(PrunesearchError, match="no space left in /somewhere"):
        ctl.work()
    [failed] = [r for r in records(ctl.study) if r.outcome]
    assert failed.outcome == "failed" and failed.message.startswith("no space left") and failed.state.name == "FAIL"
    assert [(e.status, e.outcome) for e in sink.done] == [("FAILED", None)]


def test_a_lost_workers_runs_on_an_mlflow_server_are_closed_and_its_settled_result_kept(tmp_path, postgres, mlflow_server):
    """Observed: runs of killed invocations stayed RUNNING forever, a killed logging lost a finished fine-tune."""
    book = make_book("6ms")
    search = settings(trials=8, grace_s=1.0, heartbeat_s=0.2)
    info = search_info(book, "unit-search", study="lost-worker")
    storage = postgres.database("lost")
    log = SearchLog.start(mlflow_server.uri, info, book, "enumerate", {"git_commit": "abc", "seed": 0})
    lost = WorkerId("other-machine", 4242, "elsewhere", "gone")
    lost_parent = log.writer.create_run(log.experiment_id, "killed invocation", {"kind": "search", "study": info.study, "worker": lost})
    ev = ScriptedTrainer()
    ctl = controller(storage, book, search, None, ev, log)
    ctl.study.set_user_attr(f"alive.{lost}", time.time() - 60)
    for cand, settled in ((Candidate(3, 1), True), (Candidate(2, 1), False)):
        ctl.study.enqueue_trial(cand.params)
        trial = ctl.study.ask()
        writer = TrialWriter(trial)
        writer.take(cand, lost)
        writer.claim()
        writer.run(log.begin(trial.number, cand, str(lost)))
        if settled:  # it finished and stored its result, then died while logging it
            writer.settle("trained", 12, {"finetune": 1.0}, {"ao": 0.61}, (0, 1, 2), None, (0.61, 4.2))
    ctl.plan = plan_search(ctl.study, book, search, ctl.students)
    assert ctl.plan.retried == ("B2-1/first",)
    ctl.work()
    assert "B3-1/first" not in ev.calls and ev.calls.count("B2-1/first") == 1
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([log.experiment_id], f"tags.study = '{info.study}'")
    assert client.get_run(lost_parent).info.status == "KILLED"
    by_key = {}
    for r in runs:
        if r.data.tags.get("kind") == "candidate":
            by_key.setdefault(r.data.tags["candidate"], []).append((r.data.tags["worker"] == str(lost), r.info.status))
    assert sorted(by_key["B3-1/first"]) == [(True, "FINISHED")]  # completed from the record, once
    assert sorted(by_key["B2-1/first"]) == [(False, "FINISHED"), (True, "KILLED")]
    finished = [r for r in runs if r.data.tags.get("candidate") == "B3-1/first"][0]
    assert finished.data.metrics["ao"] == 0.61 and finished.data.tags["outcome"] == "trained"
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == [log.parent_id]  # this invocation's, still open


WORKER_OF_A_KILLED_PARENT = """
import multiprocessing, os, sys, time
from prunesearch.search.workers import die_with

def child(parent):
    die_with(parent)
    print(os.getpid(), flush=True)
    time.sleep(120)

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    p.join()
"""


@pytest.mark.slow
def test_a_spawned_worker_dies_with_its_coordinator_whatever_kills_it(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(WORKER_OF_A_KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=os.getcwd()),
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its coordinator")
