"""A candidate is what it keeps: rules that yield one student train it once, and a search reuses
every fine-tune an earlier search in the same storage did (another budget, target or table).

The controller is driven through its Trainer seam by the scripted trainer of ``search_support``
(real block rules on a 12-block teacher whose first blocks matter most, so ``influence`` keeps
what ``first`` keeps); every study lives in a SQLite file, as in real use.
"""

from collections import Counter

import optuna
import pytest

from prunesearch.search.candidate import seed_checkpoint
from prunesearch.search.controller import plan_search, training_keys
from prunesearch.search.front import trained_results
from prunesearch.search.study.record import SETTLED, SKIPPED, records
from prunesearch.search.study.state import StudyCounts, StudyState
from prunesearch.search.study.storage import open_study
from tests.support.search_support import TRAINING, ListSink, ScriptedTrainer, controller, fork_workers, make_book, make_space, settings

THREE_RULES = make_space(rules=["first", "influence", "uniform"])


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _search(storage, budget, trainer, study="test", sink=None, space=THREE_RULES, **search):
    """One search (a study named ``study``) planned and worked to the end, as ``prunesearch run`` does."""
    book = make_book(budget, space)
    ctl = controller(storage, book, settings(**{"trials": 8, **search}), None, trainer, sink, study=study, space=space)
    ctl.plan = plan_search(ctl.study, book, ctl.settings, ctl.students)
    ctl.work()
    return ctl


def _settled(study):
    return Counter(r.candidate for r in records(study) if r.outcome in SETTLED)


def test_two_rules_that_keep_the_same_blocks_are_one_student_trained_once(storage):
    ev, sink = ScriptedTrainer(), ListSink()
    ctl = _search(storage, "6ms", ev, sink=sink)
    feasible = {c.key for c in ctl.book.feasible()}
    twins = {k for k in feasible if k.endswith("/influence")}
    assert len(feasible) == 12 and len(twins) == 4
    assert ctl.plan.feasible == 12 and ctl.plan.students == 8 and ctl.plan.target == 8
    assert sorted(ev.calls) == sorted(feasible - twins)  # each student fine-tuned once
    assert _settled(ctl.study) == Counter(feasible)  # every candidate settled, once
    by_key = {r.candidate: r for r in records(ctl.study) if r.settled}
    for twin in twins:
        rec, first = by_key[twin], by_key[twin.replace("influence", "first")]
        assert rec.outcome == "trained" and rec.training_key == first.training_key and rec.blocks == first.blocks
        assert (rec.accuracy, rec.sequences, rec.checkpoint) == (first.accuracy, first.sequences, first.checkpoint)
        assert rec.reused_from == {"study": "test", "trial": first.number, "candidate": first.candidate, "run_id": first.run_id}
    assert {d.key: (d.outcome, d.status) for d in sink.done if d.key in twins} == {k: ("trained", "FINISHED") for k in twins}
    results = {r.key: r for r in trained_results(ctl.study, ctl.book, "small")}
    assert results["B4-1/first"].same_as == ["B4-1/influence"] and results["B4-1/influence"].same_as == ["B4-1/first"]
    assert results["B4-1/uniform"].same_as == []
    counts = StudyCounts.of(ctl.study)
    assert counts.outcomes["trained"] == 12 and counts.reused == {StudyCounts.SAME: 4}
    assert counts.finetune_steps == 8 * ev.steps  # reused results spend no steps
    assert not ctl.state().given_up and ctl.done()


def test_a_twin_of_a_diverged_student_settles_diverged_without_a_fine_tune(storage):
    ev = ScriptedTrainer(diverge={"B3-1/first"})
    ctl = _search(storage, "6ms", ev)
    assert ev.calls.count("B3-1/first") == 1 and "B3-1/influence" not in ev.calls
    twin = [r for r in records(ctl.study) if r.candidate == "B3-1/influence" and r.settled]
    assert [(r.outcome, r.reused_from["candidate"]) for r in twin] == [("diverged", "B3-1/first")]
    assert twin[0].state == optuna.trial.TrialState.FAIL


def test_another_budget_reuses_every_fine_tune_and_trains_only_what_is_new(storage):
    first = ScriptedTrainer()
    a = _search(storage, "6ms", first, study="budget-6ms")
    again = ScriptedTrainer()
    b = _search(storage, "6.1ms", again, study="budget-6.1ms")  # the same candidates fit
    assert {c.key for c in b.book.feasible()} == {c.key for c in a.book.feasible()}
    assert b.plan.known == b.plan.students == 8 and b.plan.target == 0
    assert again.calls == []  # nothing trained the second time
    assert _settled(b.study) == _settled(a.study)
    assert StudyCounts.of(b.study).reused == {StudyCounts.EARLIER: 12} and StudyCounts.of(b.study).finetune_steps == 0
    earlier = {r.candidate: r for r in records(a.study) if r.settled}
    for r in records(b.study):
        if r.settled:
            source = earlier[r.reused_from["candidate"]]
            assert r.reused_from["study"] == "budget-6ms" and source.reused_from is None  # the fine-tune itself
            assert r.accuracy == earlier[r.candidate].accuracy and r.training_key == earlier[r.candidate].training_key
    wider = ScriptedTrainer()
    c = _search(storage, "7ms", wider, study="budget-7ms")
    new = {k for k in (x.key for x in c.book.feasible())} - {x.key for x in a.book.feasible()}
    assert new and sorted(wider.calls) == sorted(k for k in new if not k.endswith("/influence"))
    assert c.plan.known == 8 and c.plan.target == len(wider.calls)


def test_another_template_schedule_prices_anew_and_reuses_every_fine_tune(storage):
    """A re-profiled table or another template schedule prices differently and trains nothing differently."""
    first = _search(storage, "6ms", ScriptedTrainer(), study="once-per-sequence")
    again = ScriptedTrainer()
    book = make_book("6.5ms", THREE_RULES, template_update=20)  # the template branch amortised over 20 frames
    ctl = controller(storage, book, settings(trials=8), None, again, study="every-20-frames", space=THREE_RULES)
    assert any(book.prices[c.key]["fast"].priced_ms != first.book.prices[c.key]["fast"].priced_ms for c in book.candidates)
    ctl.plan = plan_search(ctl.study, book, ctl.settings, ctl.students)
    ctl.work()
    known = {c.key for c in first.book.feasible()}
    fitting = {c.key for c in book.feasible()}
    assert fitting & known and fitting - known
    assert sorted(again.calls) == sorted(k for k in fitting - known if not k.endswith("/influence"))
    assert ctl.state().reused >= fitting & known


def test_sampling_spends_its_trials_only_on_new_students_and_settles_known_ones_free(storage):
    first = ScriptedTrainer()
    _search(storage, "6ms", first, study="earlier")
    again = ScriptedTrainer()
    # 8 more students fit 8 ms; with 2 trials a sampler picks them, and the 8 known ones come free.
    ctl = _search(storage, "8ms", again, study="sampled", trials=2, strategy="sample", space=make_space())
    assert ctl.plan.strategy == "sample (tpe)" and ctl.plan.known == 8 and ctl.plan.target == 2
    assert len(again.calls) == 2 and not set(again.calls) & set(first.calls)
    state = ctl.state()
    assert state.reused >= {k for k in first.calls if not k.endswith("/influence")}
    assert len(state.settled - state.reused) == 2


def test_a_missing_checkpoint_still_counts_for_accuracy(storage, tmp_path):
    class Saving(ScriptedTrainer):
        def run(self, cand, on_step):  # noqa: ANN001, ANN202
            result = super().run(cand, on_step)
            result.checkpoint = str(tmp_path / "gone" / f"{cand.key.replace('/', '-')}.pt")  # on another machine
            return result

    _search(storage, "6ms", Saving(), study="elsewhere")
    ctl = _search(storage, "6ms", ScriptedTrainer(), study="here", space=THREE_RULES, trials=12)
    results = trained_results(ctl.study, ctl.book, "small")
    assert len(results) == 12 and all(r.ao > 0 for r in results)
    assert all(r.checkpoint.startswith(str(tmp_path / "gone")) for r in records(ctl.study) if r.settled)


def test_a_worker_asking_while_the_twin_trains_yields_and_the_twin_settles_from_it(storage):
    members = ["B4-1/first", "B4-1/influence"]
    book = make_book("6ms", THREE_RULES).only(members)
    search = settings(trials=8, strategy="enumerate", sampler="random", seeds=())
    ev, other = ScriptedTrainer(), ScriptedTrainer()
    ctl = controller(storage, book, search, None, ev, space=THREE_RULES)
    ctl.plan = plan_search(ctl.study, book, search, ctl.students)
    late = controller(storage, book, search, ctl.plan, other, worker=1, space=THREE_RULES)
    asked = []

    def meanwhile(cand, step):  # noqa: ANN001
        if step == 1 and not asked:
            asked.append(cand.key)
            late._trial()  # takes the queued twin while its student trains here

    ev.before_step = meanwhile
    ctl.work()
    assert asked == ["B4-1/first"] and other.calls == [] and ev.calls == ["B4-1/first"]
    recs = records(ctl.study)
    assert [r.outcome for r in recs if r.outcome in SKIPPED] == ["duplicate"]  # the yield, at no cost
    assert _settled(ctl.study) == Counter(members)
    assert [r.reused_from["candidate"] for r in recs if r.reused] == ["B4-1/first"]


def run_twin_worker(storage, plan, worker):  # noqa: ANN001
    """Entry point of a forked worker in the racing test: every candidate is a twin of another."""
    book = make_book("6ms", THREE_RULES).only(["B2-1/first", "B2-1/influence", "B3-1/first", "B3-1/influence"])
    search = settings(trials=8, strategy="enumerate", seeds=())
    controller(storage, book, search, plan, ScriptedTrainer(step_seconds=0.02), worker=worker, space=THREE_RULES).work()


def test_two_worker_processes_racing_for_coinciding_candidates_train_each_student_once(storage):
    book = make_book("6ms", THREE_RULES).only(["B2-1/first", "B2-1/influence", "B3-1/first", "B3-1/influence"])
    search = settings(trials=8, strategy="enumerate", seeds=())
    study = open_study(storage, "test", optuna.samplers.RandomSampler(seed=0))
    plan = plan_search(study, book, search, training_keys(ScriptedTrainer(), TRAINING, book.candidates))
    assert plan.students == plan.target == 2
    assert fork_workers(run_twin_worker, storage, plan) == [0, 0]
    recs = records(study)
    trained_here = Counter(r.training_key for r in recs if r.settled and not r.reused)
    assert len(trained_here) == 2 and set(trained_here.values()) == {1}  # each student fine-tuned once
    assert _settled(study) == Counter(c.key for c in book.candidates)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_a_reused_candidate_is_confirmed_from_the_checkpoint_it_reuses(tmp_path):
    first = tmp_path / "B4-1-first.pt"
    assert seed_checkpoint(first, 0) == first and seed_checkpoint(first, 2) == tmp_path / "B4-1-first.seed2.pt"


def test_state_tells_reused_candidates_apart(storage):
    ctl = _search(storage, "6ms", ScriptedTrainer())
    state = StudyState.read(ctl.study, 2)
    assert state.reused == {k for k in state.settled if k.endswith("/influence")}


def test_the_runs_pareto_and_the_front_table_list_one_student_under_every_rule(storage, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from rich.console import Console

    from prunesearch.cli.search_commands import front_table
    from prunesearch.search.mlflow_runs.log import SearchLog
    from prunesearch.search.mlflow_runs.read import comparable, read_results
    from prunesearch.search.results import fronts_and_ties
    from tests.support.search_support import search_info

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    book = make_book("6ms", THREE_RULES)
    log = SearchLog.start(uri, search_info(book, "twins"), book, "enumerate", {"git_commit": "abc", "seed": 0})
    ctl = _search(storage, "6ms", ScriptedTrainer(), sink=log, study="study-a")
    results = trained_results(ctl.study, book, "small")
    fronts, ties = fronts_and_ties(results, book.targets, book.budget.ms)
    log.mark_front(results, fronts, ties)

    client = MlflowClient(uri)
    runs = {r.data.tags["candidate"]: r for r in client.search_runs([log.experiment_id], "tags.kind = 'candidate'")}
    twin, first = runs["B4-1/influence"].data.tags, runs["B4-1/first"].data.tags
    assert twin["same_as"] == "B4-1/first" and first["same_as"] == "B4-1/influence" and runs["B4-1/uniform"].data.tags["same_as"] == ""
    assert twin["reused_from"] == f"B4-1/first: trial {runs['B4-1/first'].data.tags['trial']} of study study-a " \
                                  f"(run {runs['B4-1/first'].info.run_id})"
    assert twin["outcome"] == "trained" and twin["pareto"] == first["pareto"]

    read = {r.key: r for r in comparable(read_results(uri, "twins", "study-a"), "fast", allow_mixed=False)}
    assert read["B4-1/influence"].same_as == ["B4-1/first"] and read["B4-1/influence"].ao == read["B4-1/first"].ao
    assert read["B4-1/first"].row("fast")["same_as"] == "B4-1/influence"

    console = Console(width=200, record=True)
    console.print(front_table(fronts["fast"], "fast", "front", ties["fast"], [r for r in results if r not in fronts["fast"] + ties["fast"]]))
    shown = console.export_text()
    for split in ("B2-1", "B3-1", "B4-1", "B4-2"):  # one row per student, under both its names
        assert shown.count(f"{split}/first = {split}/influence") == 1 and f"{split}/influence =" not in shown
