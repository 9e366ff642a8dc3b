"""The model planner (search/planner.py): its front arithmetic, its picks, its stopping rule on
hand-made tables with a known answer, and the controller driving a search with it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from prunesearch.search.controller import plan_search
from prunesearch.search.planner import Front, Student, decide, expected_improvement, student_features
from tests.support.search_support import ScriptedTrainer, controller, make_book, settings


def test_the_front_is_the_best_ao_at_or_below_each_latency():
    front = Front([(2.0, 0.5), (3.0, 0.4), (4.0, 0.7), (4.0, 0.6)], budget_ms=10.0, floor=0.1)
    assert front.steps == [(2.0, 0.5), (4.0, 0.7)]  # (3, 0.4) is dominated
    assert [front.at(x) for x in (1.0, 2.0, 3.5, 4.0, 9.0)] == [0.1, 0.5, 0.5, 0.7, 0.7]
    assert front.segments(3.0) == [(1.0, 0.5), (6.0, 0.7)]


def test_expected_improvement_is_the_mean_area_a_point_adds():
    front = Front([(2.0, 0.5), (4.0, 0.7)], budget_ms=10.0)
    # A certain point: the exact area above the step from its latency to the budget.
    assert expected_improvement(front, 3.0, 0.6, 0.0) == pytest.approx(1.0 * 0.1)
    assert expected_improvement(front, 5.0, 0.6, 0.0) == 0.0
    # An uncertain one: the closed form equals a Monte Carlo estimate of the same expectation.
    rng = np.random.default_rng(0)
    draws = rng.normal(0.62, 0.05, 200_000)
    mc = np.mean(1.0 * np.maximum(0, draws - 0.5) + 6.0 * np.maximum(0, draws - 0.7))
    assert expected_improvement(front, 3.0, 0.62, 0.05) == pytest.approx(mc, rel=0.02)


def _students(ao_of, depths=range(2, 12)):
    """One student per depth keeping the first blocks: latency grows with depth."""
    out, truth = [], {}
    for d in depths:
        key = f"B{d}-1"
        out.append(Student(key, 5.0 + d, student_features(tuple(range(d)), 1, 12)))
        truth[key] = ao_of(d)
    return out, truth


def _search(students, truth, stop, noise=0.0, seed=0, budget=20.0):
    rng = random.Random(seed)
    observed: dict[str, float] = {}
    while True:
        decision = decide(students, observed, set(), budget, stop)
        if decision.pick is None:
            return observed, decision
        observed[decision.pick] = truth[decision.pick] + rng.gauss(0, noise)


def test_with_nothing_trained_the_fastest_student_comes_first():
    students, _ = _students(lambda d: 0.5)
    assert decide(students, {}, set(), 20.0, 0.05).pick == "B2-1"


def test_it_stops_when_no_slower_student_can_help_and_holds_the_whole_front():
    # AO peaks at depth 4 and falls after: the front is B2..B4; the slow ones can never enter it.
    students, truth = _students(lambda d: 0.6 + 0.05 * min(d, 4) - 0.04 * max(0, d - 4))
    observed, decision = _search(students, truth, stop=0.05)
    assert {"B2-1", "B3-1", "B4-1"} <= set(observed)
    assert len(observed) < len(students) and decision.chance < 0.05
    assert "students fine-tuned; no untrained one enters the front with probability 0.05" in decision.reason


def test_it_does_not_stop_while_a_slow_student_could_still_lead():
    # Flat, then the deepest student is far better: it is the front's top, and must be found.
    students, truth = _students(lambda d: 0.70 if d == 11 else 0.6 + 0.001 * d)
    for seed in range(5):
        observed, _ = _search(students, truth, stop=0.05, noise=0.005, seed=seed)
        assert "B11-1" in observed


def test_without_a_stop_level_it_trains_every_student_once():
    students, truth = _students(lambda d: 0.6 + 0.01 * d)
    observed, decision = _search(students, truth, stop=None)
    assert set(observed) == set(truth) and decision.reason == "every student is trained or training"


def test_pending_and_closed_students_are_never_picked():
    students, truth = _students(lambda d: 0.6)
    decision = decide(students, {"B2-1": 0.6}, {"B3-1"}, 20.0, None, closed={"B4-1"})
    assert decision.pick not in {"B2-1", "B3-1", "B4-1"}


def _model_search(storage, trials, stop_chance=0.05, budget="8ms"):
    book = make_book(budget)
    trainer = ScriptedTrainer(steps=3)
    search = settings(trials=trials, strategy="auto", seeds=(), stop_chance=stop_chance)
    ctl = controller(storage, book, search, None, trainer)
    ctl.plan = plan_search(ctl.study, book, search, ctl.students)
    ctl.work()
    return ctl, trainer, book


def test_trials_auto_plans_with_the_model_and_stops_with_a_reason(tmp_path):
    ctl, trainer, book = _model_search(f"sqlite:///{tmp_path / 'optuna.db'}", trials=None, stop_chance=0.3)
    students = {ctl.students[c.key] for c in book.feasible()}
    assert ctl.plan.strategy == "model, until no student enters the front with p >= 0.3"
    assert ctl.plan.target == len(students)
    trained = [ctl.students[k] for k in trainer.calls]
    assert len(trained) == len(set(trained)), "a student was fine-tuned twice"
    assert ctl.stopped and len(trained) < len(students)
    assert ctl.study.user_attrs["stopped"] == ctl.stopped
    # The planner's picks are queued with the reason they were chosen.
    planned = [t.user_attrs.get("planned") for t in ctl.study.trials if t.user_attrs.get("planned")]
    assert len(planned) == len(trained) and all("expected front gain" in p for p in planned)


def test_a_fixed_count_with_the_model_spends_exactly_it(tmp_path):
    ctl, trainer, _ = _model_search(f"sqlite:///{tmp_path / 'optuna.db'}", trials=5)
    assert ctl.plan.strategy == "model" and len(trainer.calls) == 5 and not ctl.stopped
    assert ctl.study.user_attrs["stopped"] == ""


def test_the_replay_is_deterministic_for_a_seed_and_draws_seeds_per_fine_tune(tmp_path):
    import json

    from benchmarks.search_front_efficiency import load_table, make_setting, replay
    from tests.support.space_tables import make_table

    path = tmp_path / "table.json"
    path.write_text(json.dumps(make_table(seeds=2, noise=0.02)))
    table, header = load_table(path)
    setting = make_setting(table, "orin-nx", "13ms", header["covered"], header["finetune_steps"])
    assert setting is not None and len(setting.students) >= 15
    runs = [replay(setting, table, "model, trials: auto", seed, ["0", "1"], 200) for seed in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert len(set(runs[0]["order"])) == len(runs[0]["order"]) and runs[0]["stopped"]
    tpe = replay(setting, table, "sample (tpe)", 0, ["0", "1"], 200)
    assert len(tpe["order"]) == len(setting.students) and tpe["hv"][-1] == pytest.approx(1.0)
    assert tpe["steps"] == 200 * len(setting.students)
