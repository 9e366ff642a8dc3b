"""A tracking server that goes down for good in the middle of ``prunesearch run``, then comes back.

Real processes: an ``mlflow server`` on 127.0.0.1 (stopped once the search has a finished child
run, then started again on the same store at the same address), a real PostgreSQL study, the tiny
search of the end-to-end tests. Observed before: each logging call blocked ~4 minutes, the run
exited after ~17 minutes with 10 tracebacks, and left its parent and a child run RUNNING.

* the run ends within seconds of the stop, non-zero, with one line on stderr naming the server;
* the study keeps every fine-tune that finished (as completed trials, so any study can reuse them);
* the same command, run again once the server is back, trains none of them again, logs what the
  study holds, closes every run the first one left open, and ``pareto`` shows the front.

The same two rules without a server, each at the seam that owns it: a fine-tune whose result was
stored but not logged stays a completed trial, and a run whose trial failed for want of a server
is closed FAILED with that reason by the next run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from prunesearch.cli.main import main
from prunesearch.errors import StorageError
from prunesearch.mlflow_log.store import HTTP_DEFAULTS
from prunesearch.search.controller import plan_search
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.space import Candidate
from prunesearch.search.study.liveness import Liveness, WorkerId, this_worker
from prunesearch.search.study.record import Outcome, TrialRecord, TrialWriter, records
from prunesearch.search.study.reuse import TrainedIndex
from tests.support.search_support import ListSink, ScriptedTrainer, controller, make_book, search_info, settings, tiny_search_folder
from tests.support.servers import MlflowServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
STOP_TO_EXIT_S = 60


def _finished_child(client: MlflowClient, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until the search has a FINISHED child run (a fine-tune logged whole)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = client.get_experiment_by_name("tiny")
        if found and client.search_runs([found.experiment_id], "tags.kind = 'candidate' AND attributes.status = 'FINISHED'"):
            return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no finished child run: {proc.communicate()[1][-3000:]}")


@pytest.mark.slow
def test_a_server_stopped_mid_search_is_one_line_and_the_rerun_closes_and_relogs_everything(tmp_path, postgres, monkeypatch,
                                                                                             capsys):
    server = MlflowServer.launch()
    try:
        tiny_search_folder(tmp_path, "tiny")
        storage = postgres.database("dead_server")
        server.wait()
        env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1",
                   MLFLOW_HTTP_REQUEST_TIMEOUT="3", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
        cmd = [sys.executable, "-m", "prunesearch", "run", "--experiment", "tiny.yaml", "--target", "orin-nx",
               "--budget", "9ms", "--storage", storage]
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = MlflowClient(server.uri)
        _finished_child(client, first)
        server.halt()
        stopped = time.monotonic()
        _, err = first.communicate(timeout=300)
        seconds = time.monotonic() - stopped
        assert first.returncode != 0 and "Traceback" not in err, err
        assert err.strip().splitlines() == [err.strip()], err
        assert err.startswith(f"prunesearch: error: the MLflow tracking server {server.uri} did not answer"), err
        assert seconds < STOP_TO_EXIT_S

        [name] = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=name, storage=storage)
        trained_first = {r.candidate for r in records(study) if r.outcome == Outcome.TRAINED}
        assert trained_first and all(r.state == TrialState.COMPLETE for r in records(study) if r.outcome == Outcome.TRAINED)

        server = MlflowServer.launch(server.root, server.port)
        server.wait()
        again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-3000:]
        assert f"{len(trained_first)} already done" in " ".join(again.stdout.split()), again.stdout

        fine_tunes = Counter(r.candidate for r in records(study) if r.outcome == Outcome.TRAINED and not r.reused)
        assert all(fine_tunes[c] == 1 for c in trained_first), fine_tunes  # nothing trained twice
        exp_id = client.get_experiment_by_name("tiny").experiment_id
        runs = client.search_runs([exp_id])
        assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
        parents = sorted((r for r in runs if r.data.tags["kind"] == "search"), key=lambda r: r.info.start_time)
        assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
        known = {r.run_id: r for r in records(study) if r.run_id}
        for r in runs:
            # The first search's children: logged whole, ended with the reason the study holds, or (stopped
            # before its trial recorded it) a run the study does not know, ended as lost.
            if r.data.tags["kind"] == "candidate" and r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id:
                ended = (r.info.status, r.data.tags.get("outcome"), r.data.tags.get("reason", ""))
                assert ended[0] == "FINISHED" and "ao" in r.data.metrics or (
                    ended[0] == "FAILED" and "did not answer" in ended[2]) or (
                    ended[:2] == ("KILLED", "lost") and r.info.run_id not in known), (ended, known.get(r.info.run_id))
        logged = {r.data.tags["candidate"] for r in runs if r.info.status == "FINISHED" and "ao" in r.data.metrics}
        assert {r.candidate for r in records(study) if r.outcome == Outcome.TRAINED} <= logged
        front = {r.data.tags["candidate"] for r in runs if r.data.tags.get("pareto") == "true"}

        for key in ("MLFLOW_TRACKING_URI", *HTTP_DEFAULTS):  # client() sets MLflow's HTTP defaults: kept from other tests
            monkeypatch.setenv(key, env.get(key, HTTP_DEFAULTS.get(key, "")))
        monkeypatch.chdir(tmp_path)
        assert main(["pareto", "--experiment", "tiny"]) == 0 and front
        shown = capsys.readouterr().out
        assert all(key in shown for key in front), shown
    finally:
        server.stop()


class _ServerGone(ListSink):
    """A sink whose server went down just after the first fine-tune was stored in the study."""

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        if record is not None:
            raise StorageError("the MLflow tracking server http://127.0.0.1:9 did not answer (connection refused, 1 retries)")
        super().end(run_id, cand, record, status, message)


def test_a_fine_tune_stored_but_not_logged_stays_completed_and_is_not_trained_again(tmp_path):
    book, search = make_book("6ms"), settings(trials=8)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    trainer = ScriptedTrainer()
    ctl = controller(storage, book, search, None, trainer, _ServerGone())
    ctl.plan = plan_search(ctl.study, book, search, ctl.students)
    with pytest.raises(StorageError, match="did not answer"):
        ctl.work()
    [stored] = [r for r in records(ctl.study) if r.outcome == Outcome.TRAINED]
    assert stored.state == TrialState.COMPLETE and stored.values  # not FAIL: other studies can reuse it
    assert TrainedIndex(ctl.study._storage, "another search").get(stored.training_key) is not None
    again = controller(storage, book, search, None, trainer)  # the server is back
    again.plan = plan_search(again.study, book, search, again.students)
    again.work()
    assert trainer.calls.count(stored.candidate) == 1


def test_a_run_whose_trial_failed_for_want_of_a_server_is_closed_failed_with_that_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book, search = make_book("6ms"), settings(trials=8, grace_s=1.0)
    info = search_info(book, "dead-server", study="dead-server")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = SearchLog.start(uri, info, book, "enumerate", {"git_commit": "abc", "seed": 0})
    gone = WorkerId("this-machine", 4242, "elsewhere", "gone")
    parent = log.writer.create_run(log.experiment_id, "cut-off invocation", {"kind": "search", "study": info.study, "worker": gone})
    ctl = controller(f"sqlite:///{tmp_path / 'optuna.db'}", book, search, None, ScriptedTrainer(), log)
    ctl.study.enqueue_trial(Candidate(3, 1).params)
    trial = ctl.study.ask()
    writer = TrialWriter(trial)
    writer.take(Candidate(3, 1), gone)
    writer.run(run_id := log.begin(trial.number, Candidate(3, 1), str(gone)))
    reason = "the MLflow tracking server http://127.0.0.1:9 did not answer (connection refused, 1 retries)"
    writer.fail(Outcome.FAILED, reason)  # stored in the study; the server was gone before the run could be ended
    log.close_lost(records(ctl.study), Liveness({str(this_worker()): time.time()}, grace_s=1.0))  # this process is alive
    child, lost_parent = log.writer.client.get_run(run_id), log.writer.client.get_run(parent)
    assert (child.info.status, child.data.tags["reason"]) == ("FAILED", reason)
    assert lost_parent.info.status == "KILLED" and log.writer.client.get_run(log.parent_id).info.status == "RUNNING"
