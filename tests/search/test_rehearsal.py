"""Multi-machine rehearsal: three "machines" (processes with their own working folders) share one
study in a real PostgreSQL and one real MLflow tracking server; one is killed with SIGKILL in the
middle of a fine-tune, another in the middle of logging a finished one; the survivor finishes.

Each machine reaches the MLflow server through its own small HTTP relay (tests/support/relay.py) that can
hold one chosen request: the kill then lands at a known point (while the live loss of the first
fine-tune is being sent, or while the finished result is being logged), not at a random moment.
Tiny configuration as in test_e2e_search.py: four candidates fit, four fine-tune steps.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from prunesearch.search.study.record import records
from tests.support.relay import Relay
from tests.support.search_support import TINY_FITTING, tiny_search_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
GRACE_S = 4
FITTING = TINY_FITTING


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The experiment, its teacher and data, in one folder every machine reads."""
    root = tmp_path_factory.mktemp("shared")
    tiny_search_folder(root, "rehearsal", f", heartbeat_s: 0.5, grace_s: {GRACE_S}")
    return root


def _machine(name, shared, tmp_path, relay, storage):
    folder = tmp_path / name
    folder.mkdir()
    env = dict(os.environ, MLFLOW_TRACKING_URI=relay.uri, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "prunesearch", "run", "--experiment", str(shared / "rehearsal.yaml"),
           "--target", "orin-nx", "--budget", "9ms", "--storage", storage]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(event, proc, what, timeout=240):
    deadline = time.time() + timeout
    while not event.wait(0.2):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{what} never happened: {proc.communicate()[0][-3000:]}")


def _report(trained, recs, runs):
    """For benchmarks/shared_search.py: the counts of this rehearsal, before the asserts judge them."""
    path = os.environ.get("PRUNESEARCH_REHEARSAL_REPORT")
    if path:
        running = sum(r.info.status == "RUNNING" for r in runs) + sum(r.state == TrialState.RUNNING for r in recs)
        counts = {"lost": len(FITTING - set(trained)), "trained_twice": sum(n - 1 for n in trained.values()), "running": running}
        with open(path, "a") as fh:
            fh.write(json.dumps(counts) + "\n")


@pytest.mark.slow
def test_three_machines_two_killed_nothing_lost_nothing_trained_twice(shared, tmp_path, postgres, mlflow_server):
    storage = postgres.database("rehearsal")
    # A is killed while its first fine-tune sends its live loss; B while it logs a finished result.
    relay_a = Relay(mlflow_server.port, hold=lambda path, body: "log-batch" in path and b"finetune.loss" in body)
    relay_b = Relay(mlflow_server.port, hold=lambda path, body: "log-batch" in path and b'"ao"' in body)
    relay_c = Relay(mlflow_server.port, paused=True)  # C starts with them, then waits for A and B to be killed
    try:
        a = _machine("a", shared, tmp_path, relay_a, storage)
        b = _machine("b", shared, tmp_path, relay_b, storage)
        c = _machine("c", shared, tmp_path, relay_c, storage)
        _wait(relay_a.held, a, "machine A's fine-tune")
        _wait(relay_b.held, b, "machine B's logging")
        for proc in (a, b):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        killed_at = time.time()
        relay_c.resume()
        out, _ = c.communicate(timeout=400)
    finally:
        for relay in (relay_a, relay_b, relay_c):
            relay.close()
    assert c.returncode == 0, out
    assert "Traceback" not in out

    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    recs = records(study)
    trained = Counter(r.candidate for r in recs if r.outcome == "trained")
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name("rehearsal")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    _report(trained, recs, runs)
    assert trained == Counter(FITTING)  # every fitting candidate trained to completion exactly once
    assert not [r for r in recs if r.state == TrialState.RUNNING]
    workers = {r.worker for r in recs if r.worker}
    assert len(workers) == 3
    # A's candidate came back once: through a retry, or, when machines planned at the same moment
    # (each queues every candidate), through its second queued trial.
    lost = [r for r in recs if r.state == TrialState.FAIL and r.claimed]
    assert len(lost) == 1, recs  # A's fine-tune
    again = [r for r in recs if r.candidate == lost[0].candidate and r.outcome == "trained"]
    assert len(again) == 1 and again[0].worker != lost[0].worker
    assert again[0].started.timestamp() - killed_at <= GRACE_S + 10  # re-run once A's beats are overdue
    assert [r.retry_of for r in recs if r.retry_of is not None] in ([], [lost[0].number])

    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = [r for r in runs if r.data.tags.get("kind") == "candidate"]
    finished = Counter(r.data.tags["candidate"] for r in children if r.info.status == "FINISHED")
    assert finished == Counter(FITTING)  # exactly one FINISHED child run per candidate
    assert all("ao" in r.data.metrics for r in children if r.info.status == "FINISHED")
    assert [r.info.status for r in children if r.info.status != "FINISHED"] == ["KILLED"]  # A's fine-tune
    parents = {r.data.tags["worker"]: r.info.status for r in runs if r.data.tags.get("kind") == "search"}
    assert sorted(parents.values()) == ["FINISHED", "KILLED", "KILLED"]
