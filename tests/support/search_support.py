"""Small pricer and trainer for the search tests, through the search's own Protocols.

They stand where the latency tables and the fine-tune/evaluation parts plug in, so the controller
and the MLflow logging can be tested in seconds; the end-to-end test runs the real parts.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prunesearch.data.processing import CropGeometry
from prunesearch.models import get_preset
from prunesearch.pruning import choose_blocks
from prunesearch.search.budget import parse_budget
from prunesearch.search.controller import SearchController, SilentProgress, TrainResult
from prunesearch.search.experiment import DataSpec, EarlyStop, SearchSettings
from prunesearch.search.identity import TrainingIdentity
from prunesearch.search.mlflow_runs.schema import SearchInfo
from prunesearch.search.pricing import Price, PriceBook
from prunesearch.search.samplers import make_sampler
from prunesearch.search.space import Candidate, SearchSpace, parse_space
from prunesearch.search.study.liveness import Liveness
from prunesearch.search.study.record import TrialRecord
from prunesearch.search.study.storage import open_study
from prunesearch.training.finetune import FinetuneConfig
from prunesearch.configfile import Section

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


def sequences_of(c: Candidate, acc: float, count: int = 10, frames: int = 10) -> dict:
    """Per-sequence scores whose pooled AO is ``acc``: every candidate finds the same sequences
    hard or easy (+-0.2), plus +-0.03 of its own noise, so candidates 0.01 apart are tied and
    0.05 apart are not."""
    shift = zlib.crc32(c.key.encode()) % count
    noise = [0.015 * ((i + shift) % 5 - 2) for i in range(count)]
    difficulty = [0.2 * (2 * i / (count - 1) - 1) for i in range(count)]
    means = [acc + d + e for d, e in zip(difficulty, noise)]
    return {
        "names": [f"seq{i:02d}" for i in range(count)],
        "iou_sum": [[m * frames for m in means]],
        "frames": [[frames] * count],
        "hits50": [[frames * (m > 0.5) for m in means]],
        "hits75": [[frames * (m > 0.75) for m in means]],
        "auc": [means],
    }


# Block influence of a 12-block teacher whose first blocks matter most, as the shipped teacher's
# do: the 'influence' rule then keeps the blocks 'first' keeps (one student, two rules).
FIRST_MATTER_MOST = tuple(float(TEACHER_DEPTH - i) for i in range(TEACHER_DEPTH))


@dataclass
class ScriptedTrainer:
    """Loss falls with depth; ``diverge`` candidates diverge; ``interrupt`` raises Ctrl-C at a step;
    ``before_step(cand, step)``, when set, runs before each step is reported (what happens meanwhile).
    Blocks are the rules' real choice on a 12-block teacher with influence ``influence``."""

    steps: int = 12
    diverge: set[str] = field(default_factory=set)
    raises: set[str] = field(default_factory=set)
    interrupt: tuple[str, int] | None = None
    step_seconds: float = 0.0
    loss_of: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    before_step: Callable[[Candidate, int], None] | None = None
    influence: tuple[float, ...] = FIRST_MATTER_MOST

    def blocks(self, cand: Candidate) -> tuple[int, ...]:
        return choose_blocks(TEACHER_DEPTH, cand.depth, cand.rule, self.influence)

    def run(self, cand: Candidate, on_step) -> TrainResult:  # noqa: ANN001
        self.calls.append(cand.key)
        losses = []
        for step in range(self.steps):
            if self.interrupt == (cand.key, step):
                raise KeyboardInterrupt
            loss = self.loss_of.get(cand.key, 1.0 / cand.depth)
            if cand.key in self.raises and step == 2:
                raise ValueError(f"cannot build {cand.key}\nsecond line")
            if cand.key in self.diverge and step == 3:
                return TrainResult("diverged", losses=losses, seconds={"finetune": 0.01})
            losses.append({"loss": loss})
            time.sleep(self.step_seconds)
            if self.before_step is not None:
                self.before_step(cand, step + 1)
            if on_step(step + 1, {"loss": loss}):
                return TrainResult("stopped", losses=losses, seconds={"finetune": 0.01})
        acc = accuracy_of(cand)
        return TrainResult(
            "ok",
            accuracy={"ao": acc, "sr50": acc + 0.1, "sr75": acc - 0.1, "auc": acc},
            losses=losses,
            seconds={"finetune": 0.01, "evaluate": 0.01},
            blocks=self.blocks(cand),
            sequences=sequences_of(cand, acc),
        )


@dataclass
class Ended:
    run_id: str
    key: str
    outcome: str | None  # the settled record's outcome, None when the fine-tune did not finish
    status: str
    message: str


class ListSink:
    """A :class:`~prunesearch.search.controller.TrialSink` keeping what it was told, in memory."""

    def __init__(self) -> None:
        self.begun: list[str] = []
        self.done: list[Ended] = []
        self.steps: dict[str, list[int]] = {}

    def begin(self, number: int, cand: Candidate, worker: str) -> str:
        self.begun.append(cand.key)
        self.steps[f"run-{number}"] = []
        return f"run-{number}"

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        self.steps[run_id].append(step)

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        self.done.append(Ended(run_id, cand.key, record.outcome if record else None, status, message))

    def close_lost(self, recs: list[TrialRecord], live: Liveness) -> None:
        pass


def search_info(book: PriceBook, experiment: str, study: str = "study-a", data: str = "data-fp") -> SearchInfo:
    return SearchInfo(
        experiment=experiment, study=study, storage="sqlite:///optuna.db", targets=book.targets,
        budget=book.budget, architecture="vit-b", teacher="shipped small teacher", teacher_fingerprint="teacher-fp",
        data="built-in", data_fingerprint=data, seed=0, accuracy_scale="small", finetune={"steps": 12},
        table_hashes=book.table_hashes,
    )


def settings(**kw: object) -> SearchSettings:
    base = dict(trials=4, strategy="auto", sampler="tpe", seeds=(Candidate(4, 2),), early_stop=None)
    base.update(kw)
    return SearchSettings(**base)


# The training identity of the scripted fine-tunes: a settled trial's training key derives from it.
TRAINING = TrainingIdentity("teacher-fp", "data-fp", DataSpec(), FinetuneConfig(steps=12), CropGeometry(), real_data=False)


def controller(storage: str, book: PriceBook, search: SearchSettings, plan, trainer, sink=None, worker: int = 0,  # noqa: ANN001
               study: str = "test", space: SearchSpace | None = None):
    study = open_study(storage, study, make_sampler(search.sampler, worker, 2))
    return SearchController(study, book, space or make_space(), TEACHER_DEPTH, search, plan, trainer, sink or ListSink(),
                            SilentProgress(), TRAINING, worker)


def fork_workers(target: Callable[..., None], storage: str, plan, count: int = 2) -> list[int | None]:  # noqa: ANN001
    """Run ``target(storage, plan, i)`` in ``count`` forked processes at once; their exit codes.
    Fork: no re-import per worker; the product's spawn path is run by the end-to-end test."""
    import multiprocessing

    procs = [multiprocessing.get_context("fork").Process(target=target, args=(storage, plan, i)) for i in range(count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    return [p.exitcode for p in procs]


def run_worker(storage: str, plan, worker: int) -> None:  # noqa: ANN001
    """Entry point of a spawned worker process in the two-workers test."""
    search = settings(trials=5, early_stop=EarlyStop(reduction=3, rungs=1, window=2))
    controller(storage, make_book(), search, plan, ScriptedTrainer(step_seconds=0.01), worker=worker).work()


# The tiny real search of the end-to-end tests: four candidates fit 9 ms on orin-nx, four steps each.
TINY_EXPERIMENT = """
architecture: vit-b
space: {file: litetrack, depth: {min: 2, max: 4}, rules: [first, uniform]}
teacher: {checkpoint: teacher.pt}
data: {path: data, train_sequences: 3, val_sequences: 2}
finetune: {steps: 4, batch_size: 2, log_every: 2, warmup_steps: 1}
search: {trials: 4, seeds: [B3-1], early_stop: false, confirm: false%s}
seed: 0
"""
TINY_FITTING = {"B2-1/first", "B2-1/uniform", "B3-1/first", "B3-1/uniform"}


def tiny_search_folder(root: Path, name: str, search_extra: str = "") -> Path:
    """``root/name.yaml`` with a random small teacher and a generated GOT-10k folder beside it."""
    import torch

    from prunesearch.checkpoints import save_checkpoint
    from prunesearch.data.synthetic import SynthParams, generate
    from prunesearch.models import build_teacher

    torch.manual_seed(0)
    save_checkpoint(build_teacher(get_preset("small")), root / "teacher.pt")
    params = SynthParams(min_frames=8, max_frames=10)
    for split, count in (("train", 3), ("val", 2)):
        generate(root / "data", count, seed=1, split=split, params=params)
    (root / f"{name}.yaml").write_text(TINY_EXPERIMENT % search_extra)
    return root / f"{name}.yaml"
