"""The Optuna controller: strategy, feasibility, seeding, early stopping, failure, interruption, workers.

The pricer and evaluator come from ``search_support`` through the controller's Protocols; every
study lives in a SQLite file, as in real use.
"""

import multiprocessing
import socket
import subprocess
import sys
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from prunesearch.search.controller import plan_search
from prunesearch.search.study import SETTLED, SKIPPED, StudyState, open_study, trained_results
from prunesearch.search.experiment import EarlyStop
from prunesearch.search.space import Candidate
from search_support import ListSink, ScriptedEvaluator, controller, make_book, run_worker, settings


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _run(storage, book, search, evaluator, sink=None):
    ctl = controller(storage, book, search, None, evaluator, sink)
    ctl.plan = plan_search(ctl.study, book, search)
    ctl.work()
    return ctl


def _settled(study):
    return [t.user_attrs["candidate"] for t in study.get_trials() if t.user_attrs.get("outcome") in SETTLED]


def test_small_space_is_enumerated_seed_first(storage):
    book = make_book("6ms")
    feasible = {c.key for c in book.feasible()}
    assert len(feasible) == 8
    ev = ScriptedEvaluator()
    ctl = _run(storage, book, settings(trials=8), ev)
    assert ctl.plan.strategy == "enumerate"
    assert ev.calls[0] == "B4-2/first"
    assert sorted(ev.calls) == sorted(feasible)
    results = trained_results(ctl.study, book, "small")
    assert {r.key for r in results} == feasible
    assert all(r.run_id.startswith("run-") for r in results)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_sampler_trains_the_budgeted_number_and_nothing_over_budget(storage, sampler):
    book = make_book("8ms")
    feasible = {c.key for c in book.feasible()}
    assert len(feasible) == 18
    ev = ScriptedEvaluator(steps=3)
    ctl = _run(storage, book, settings(trials=5, sampler=sampler), ev)
    assert ctl.plan.strategy == f"sample ({sampler})"
    assert len(ev.calls) == 5 and len(set(ev.calls)) == 5
    assert set(ev.calls) <= feasible and "B4-2/first" in ev.calls
    for t in ctl.study.get_trials():
        outcome = t.user_attrs["outcome"]
        assert outcome in SKIPPED or outcome == "trained"
        if outcome == "over_budget":
            assert t.constraints["budget_ms"] > 0 and t.state == TrialState.PRUNED
            assert t.user_attrs["candidate"] not in ev.calls
        elif outcome == "trained":
            assert t.constraints["budget_ms"] <= 0 and t.constraints["space"] == 0


def test_budget_on_any_target_is_enough(storage):
    book = make_book("8ms")
    cand = Candidate(6, 3)
    assert book.fits(cand, "fast") and not book.fits(cand, "slow") and book.margin_ms(cand) <= 0


def test_diverged_candidate_fails_and_the_search_goes_on(storage):
    book = make_book("6ms")
    ev = ScriptedEvaluator(diverge={"B3-1/first"})
    sink = ListSink()
    ctl = _run(storage, book, settings(trials=8), ev, sink)
    failed = [t for t in ctl.study.get_trials() if t.state == TrialState.FAIL]
    assert [t.user_attrs["outcome"] for t in failed] == ["diverged"]
    assert len(trained_results(ctl.study, book, "small")) == 7
    assert [d.outcome for d in sink.done].count("diverged") == 1
    again = ScriptedEvaluator()
    _run(storage, book, settings(trials=8), again)
    assert again.calls == []


def test_interrupted_search_resumes_without_repeating_finished_candidates(storage):
    book = make_book("6ms")
    first = ScriptedEvaluator(interrupt=("B4-1/first", 5))
    with pytest.raises(KeyboardInterrupt):
        _run(storage, book, settings(trials=8), first)
    finished = first.calls[:-1]
    assert first.calls[-1] == "B4-1/first" and finished
    second = ScriptedEvaluator()
    ctl = _run(storage, book, settings(trials=8), second)
    assert ctl.plan.retried == ("B4-1/first",)
    assert "B4-1/first" in second.calls
    assert not set(second.calls) & set(finished)
    assert sorted(_settled(ctl.study)) == sorted(c.key for c in book.feasible())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_of_a_killed_process_is_failed_and_rerun(storage):
    book = make_book("6ms")
    ctl = controller(storage, book, settings(trials=8), None, ScriptedEvaluator())
    study = ctl.study
    study.enqueue_trial(Candidate(3, 1).params)
    trial = study.ask()
    assert ctl._suggest(trial) == Candidate(3, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial.set_user_attr("candidate", "B3-1/first")
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    trial.set_user_attr("claimed", True)
    assert "B3-1/first" in StudyState.read(study).running
    ev = ScriptedEvaluator()
    ctl = _run(storage, book, settings(trials=8), ev)
    assert ctl.plan.retried == ("B3-1/first",)
    assert study.trials[0].state == TrialState.FAIL
    assert Counter(_settled(ctl.study))["B3-1/first"] == 1


def test_early_stopping_stops_a_candidate_dominated_at_a_rung(storage):
    book = make_book("6ms")
    # B4-2/uniform has the latency of the seed B4-2/first and a much worse loss.
    ev = ScriptedEvaluator(loss_of={"B4-2/uniform": 5.0})
    ctl = _run(storage, book, settings(trials=8, early_stop=EarlyStop(reduction=2, rungs=1, window=2)), ev)
    stopped = [t for t in ctl.study.get_trials() if t.user_attrs.get("outcome") == "early_stopped"]
    assert [t.user_attrs["candidate"] for t in stopped] == ["B4-2/uniform"]
    assert stopped[0].state == TrialState.PRUNED and stopped[0].user_attrs["result"]["steps"] == 6
    assert "B4-2/uniform" not in {r.key for r in trained_results(ctl.study, book, "small")}
    assert len(trained_results(ctl.study, book, "small")) == 7


def test_two_worker_processes_share_one_study_without_duplicates(storage):
    book = make_book()
    search = settings(trials=5, early_stop=EarlyStop(reduction=3, rungs=1, window=2))
    study = open_study(storage, "test", optuna.samplers.RandomSampler(seed=0))
    plan = plan_search(study, make_book(), search)
    # fork: no re-import per worker; the product's spawn path is run by the end-to-end test
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=run_worker, args=(storage, plan, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    settled = _settled(study)
    assert len(settled) == len(set(settled)) == plan.target == 5
    workers = {t.user_attrs["worker"] for t in study.get_trials() if t.user_attrs.get("outcome") in SETTLED}
    assert len(workers) == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert {c.key for c in book.feasible()} >= set(settled)


def test_storage_opens_when_another_process_created_the_schema_at_the_same_moment(tmp_path, monkeypatch):
    import sqlalchemy

    from prunesearch.search import study as study_module

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(url)
        if len(calls) == 1:
            real(url, **kw)  # the other process wins the race ...
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        return real(url, **kw)

    monkeypatch.setattr(study_module.optuna.storages, "RDBStorage", racing)
    storage = study_module.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(calls) == 2 and isinstance(storage, real) and storage.get_all_studies() == []
