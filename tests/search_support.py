"""Small pricer and evaluator for the search tests, through the search's own Protocols.

They stand where the latency tables and the fine-tune/evaluation parts plug in, so the controller
and the MLflow logging can be tested in seconds; the end-to-end test runs the real parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prunesearch.models import get_preset
from prunesearch.search.budget import parse_budget
from prunesearch.search.controller import FinishedTrial, Outcome, SearchController, SilentProgress
from prunesearch.search.study import make_sampler, open_study
from prunesearch.search.experiment import EarlyStop, SearchSettings
from prunesearch.search.pricing import Price, PriceBook
from prunesearch.search.space import Candidate, SearchSpace, parse_space
from prunesearch.search.yamlfile import Section

TEACHER_DEPTH = 12


def make_space(**keys: object) -> SearchSpace:
    """Depths 2..8, rules first and uniform, at most half the blocks interacting."""
    data = {"depth": {"min": 2, "max": 8}, "rules": ["first", "uniform"], "constraints": ["2 * ai_layers <= depth"]}
    data.update(keys)
    return parse_space(Section(data, "test-space"))


class LinearPricer:
    """Per-frame latency grows with depth, interaction layers a little more; two devices."""

    targets = ("fast", "slow")

    def __init__(self, template_update: int | None = None) -> None:
        self.template_update = template_update

    def price(self, c: Candidate) -> dict[str, Price]:
        base = 1.0 + c.depth + 0.2 * c.ai_layers
        k = self.template_update
        return {"fast": Price(base, 0.3 * c.depth, k), "slow": Price(2 * base, 0.6 * c.depth, k)}

    def table_hashes(self) -> dict[str, str]:
        return {"fast": "hash-fast", "slow": "hash-slow"}

    def warnings(self) -> list[str]:
        return []


def make_book(budget: str = "6ms", space: SearchSpace | None = None, template_update: int | None = None) -> PriceBook:
    space = space or make_space()
    return PriceBook(space.candidates(TEACHER_DEPTH), LinearPricer(template_update), parse_budget(budget), get_preset("vit-b"))


def accuracy_of(c: Candidate) -> float:
    """Deeper is better, interaction helps, 'first' beats 'uniform': a front with several members."""
    return 0.30 + 0.05 * c.depth + 0.02 * c.ai_layers + (0.01 if c.rule == "first" else 0.0)


@dataclass
class ScriptedEvaluator:
    """Loss falls with depth; ``diverge`` candidates diverge; ``interrupt`` raises Ctrl-C at a step."""

    steps: int = 12
    diverge: set[str] = field(default_factory=set)
    interrupt: tuple[str, int] | None = None
    step_seconds: float = 0.0
    loss_of: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def run(self, cand: Candidate, on_step) -> Outcome:  # noqa: ANN001
        self.calls.append(cand.key)
        losses = []
        for step in range(self.steps):
            if self.interrupt == (cand.key, step):
                raise KeyboardInterrupt
            loss = self.loss_of.get(cand.key, 1.0 / cand.depth)
            if cand.key in self.diverge and step == 3:
                return Outcome("diverged", losses=losses, seconds={"finetune": 0.01})
            losses.append({"loss": loss})
            time.sleep(self.step_seconds)
            if on_step(step + 1, {"loss": loss}):
                return Outcome("stopped", losses=losses, seconds={"finetune": 0.01})
        acc = accuracy_of(cand)
        return Outcome(
            "ok",
            accuracy={"ao": acc, "sr50": acc + 0.1, "sr75": acc - 0.1, "auc": acc},
            losses=losses,
            seconds={"finetune": 0.01, "evaluate": 0.01},
            blocks=tuple(range(cand.depth)),
        )


class ListSink:
    def __init__(self) -> None:
        self.done: list[FinishedTrial] = []

    def record(self, done: FinishedTrial) -> str:
        self.done.append(done)
        return f"run-{done.number}"


def settings(**kw: object) -> SearchSettings:
    base = dict(trials=4, strategy="auto", sampler="tpe", seeds=(Candidate(4, 2),), early_stop=None)
    base.update(kw)
    return SearchSettings(**base)


def controller(storage: str, book: PriceBook, search: SearchSettings, plan, evaluator, sink=None, worker: int = 0):  # noqa: ANN001
    study = open_study(storage, "test", make_sampler(search.sampler, worker, 2))
    return SearchController(
        study, book, make_space(), TEACHER_DEPTH, search, plan, evaluator, sink or ListSink(), SilentProgress(), worker
    )


def run_worker(storage: str, plan, worker: int) -> None:  # noqa: ANN001
    """Entry point of a spawned worker process in the two-workers test."""
    search = settings(trials=5, early_stop=EarlyStop(reduction=3, rungs=1, window=2))
    controller(storage, make_book(), search, plan, ScriptedEvaluator(step_seconds=0.01), worker=worker).work()
