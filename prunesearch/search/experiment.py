"""Experiment files: what one search is about, apart from the device and budget given on the command line.

An experiment (``experiments/NAME.yaml``) names the deployment architecture whose latency is
priced, the candidate space, the teacher (a checkpoint, or the shipped small teacher), the data
(a GOT-10k/LaSOT folder, or built-in sequences), the brief fine-tune, the search settings and the
seed. ``prunesearch run --experiment NAME`` finds ``./experiments/NAME.yaml`` first, then the copy
shipped with the package (see :func:`prunesearch.search.yamlfile.config_dirs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import PRESETS, TrackerConfig
from prunesearch.search.space import Candidate, SearchSpace, load_space
from prunesearch.search.yamlfile import Section, locate, read_yaml

EXPERIMENT_KEYS = (
    "description", "architecture", "space", "teacher", "data", "finetune", "evaluation", "search", "seed", "reference",
)
# Where and how fast a fine-tune runs, not what it computes: left out of the study's identity, so
# one study can be shared by a GPU machine and a CPU machine (loader workers never change the pairs).
RUNTIME_FINETUNE_KEYS = ("device", "loader_workers", "threads")
STRATEGIES = ("auto", "enumerate", "sample")
SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class DataSpec:
    """Training and validation sequences: a dataset folder, or the built-in synthetic ones (``path`` None)."""

    path: Path | None = None
    train_split: str = "train"
    val_split: str = "val"
    train_sequences: int | None = None
    val_sequences: int = 4

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "built-in"


@dataclass(frozen=True)
class EarlyStop:
    """Pareto successive halving (see :mod:`prunesearch.search.early_stop`).

    ``margin``: a no-slower peer counts as better only if its loss is lower by more than this
    fraction; one noisy comparison at an early rung should not stop a future front member.
    """

    reduction: int = 3
    rungs: int = 2
    window: int = 10
    margin: float = 0.05


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 6
    strategy: str = "auto"
    sampler: str = "tpe"
    seeds: tuple[Candidate, ...] = ()
    early_stop: EarlyStop | None = EarlyStop()
    workers: int = 1
    # Sharing a study: a fine-tune that raises is retried this often; a worker silent for
    # grace_s seconds (it beats every heartbeat_s) is lost and its candidate trained again.
    retries: int = 2
    heartbeat_s: float = 10.0
    grace_s: float = 60.0


@dataclass(frozen=True)
class PublishedResult:
    """A published variant of the experiment's architecture, drawn beside the search's points."""

    label: str
    candidate: Candidate
    ao: float  # fraction in [0, 1]


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    architecture: str
    space: SearchSpace
    data: DataSpec
    search: SearchSettings
    finetune: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: Path | None = None
    seed: int = 0
    description: str = ""
    reference: tuple[PublishedResult, ...] = ()
    evaluation_device: str | None = None  # evaluation.device; None: the fine-tune's device

    @property
    def arch(self) -> TrackerConfig:
        """The deployment architecture: latency, MACs and params are always priced for it."""
        return PRESETS[self.architecture]

    @property
    def teacher_label(self) -> str:
        return str(self.teacher_checkpoint) if self.teacher_checkpoint else "shipped small teacher"

    def identity(self) -> str:
        """Hash of the settings that give a finished trial its meaning.

        How much is searched (trials, workers) is left out, so a re-run with more trials resumes
        the same study; paths are left out too (the runner adds content fingerprints of teacher and
        data instead), so machines with different folders can share one study.
        """
        space = self.space
        settings = {
            "architecture": self.architecture,
            "space": [space.depth_min, space.depth_max, space.ai_min, space.ai_max, space.rules, space.constraints],
            "data": [self.data.train_split, self.data.val_split, self.data.train_sequences, self.data.val_sequences],
            "search": [self.search.strategy, self.search.sampler, [c.key for c in self.search.seeds], self.search.early_stop],
            "finetune": {k: v for k, v in self.finetune.items() if k not in RUNTIME_FINETUNE_KEYS},
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

    def with_overrides(
        self,
        teacher: str | None = None,
        data: str | None = None,
        seed: int | None = None,
        trials: int | None = None,
    ) -> "Experiment":
        """Apply ``--teacher``, ``--data``, ``--seed``, ``--trials`` (paths relative to the working folder)."""
        out = self
        if teacher is not None:
            out = dataclasses.replace(out, teacher_checkpoint=_existing(Path(teacher), "--teacher", "checkpoint"))
        if data is not None:
            out = dataclasses.replace(
                out, data=dataclasses.replace(out.data, path=_existing(Path(data), "--data", "data folder"))
            )
        if seed is not None:
            out = dataclasses.replace(out, seed=seed)
        if trials is not None:
            if trials < 1:
                raise PrunesearchError(f"--trials must be at least 1, got {trials}")
            out = dataclasses.replace(out, search=dataclasses.replace(out.search, trials=trials))
        return out

    def finetune_config(self) -> Any:
        """The experiment's ``finetune:`` keys as a :class:`prunesearch.training.FinetuneConfig`.

        Keys and value types are checked against the dataclass (nested ones too, e.g. ``augment``)
        so a typo names the key; the experiment's seed is the fine-tune seed, so every candidate
        sees the same batches.
        """
        from prunesearch.training import FinetuneConfig

        config = build_dataclass(FinetuneConfig, Section(self.finetune, str(self.path), "finetune."))
        return dataclasses.replace(config, seed=self.seed) if hasattr(config, "seed") else config


def build_dataclass(cls: type, section: Section) -> Any:
    """``cls(**section)`` with every key and value type checked against the field's default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    section.only(fields)
    values: dict[str, Any] = {}
    for key, value in section.data.items():
        f = fields[key]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            values[key] = build_dataclass(type(default), section.section(key))
            continue
        if isinstance(default, bool):
            ok, allowed = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, allowed = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, allowed = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, allowed = default is None or isinstance(value, type(default)), f"a {type(default).__name__}"
        if not ok:
            raise section.fail(key, f"{allowed} (default {default!r})", value)
        values[key] = float(value) if isinstance(default, float) else value
    return cls(**values)


def _existing(path: Path, where: str, what: str) -> Path:
    if not path.exists():
        raise PrunesearchError(f"{what} {path} ({where}) does not exist")
    return path.resolve()


def _parse_search(section: Section) -> SearchSettings:
    section.only(("trials", "strategy", "sampler", "seeds", "early_stop", "workers", "retries", "heartbeat_s", "grace_s"))
    seeds = tuple(Candidate.parse(s) for s in section.text_list("seeds", []))
    default = SearchSettings()
    early: EarlyStop | None = EarlyStop()
    if section.data.get("early_stop") is False:
        early = None
    elif section.has("early_stop"):
        es = section.section("early_stop").only(("reduction", "rungs", "window", "margin"))
        early = EarlyStop(
            reduction=es.integer("reduction", early.reduction, minimum=2),
            rungs=es.integer("rungs", early.rungs, minimum=1),
            window=es.integer("window", early.window, minimum=1),
            margin=es.number("margin", early.margin, minimum=0.0),
        )
    return SearchSettings(
        trials=section.integer("trials", default.trials, minimum=1),
        strategy=section.text("strategy", default.strategy, STRATEGIES),
        sampler=section.text("sampler", default.sampler, SAMPLERS),
        seeds=seeds,
        early_stop=early,
        workers=section.integer("workers", default.workers, minimum=1),
        retries=section.integer("retries", default.retries, minimum=0),
        heartbeat_s=section.number("heartbeat_s", default.heartbeat_s, minimum=0.1),
        grace_s=section.number("grace_s", default.grace_s, minimum=0.5),
    )


def _parse_data(section: Section, base: Path) -> DataSpec:
    section.only(("path", "train_split", "val_split", "train_sequences", "val_sequences"))
    path = section.optional_text("path")
    default = DataSpec()
    return DataSpec(
        path=_existing(base / path, section.where("path"), "data folder") if path else None,
        train_split=section.text("train_split", default.train_split),
        val_split=section.text("val_split", default.val_split),
        train_sequences=section.integer("train_sequences", minimum=1) if section.has("train_sequences") else None,
        val_sequences=section.integer("val_sequences", default.val_sequences, minimum=1),
    )


def _parse_reference(section: Section) -> tuple[PublishedResult, ...]:
    out = []
    for label in section.data:
        row = section.section(label).only(("depth", "ai_layers", "got10k_ao"))
        cand = Candidate(row.integer("depth", minimum=1), row.integer("ai_layers", minimum=1))
        out.append(PublishedResult(str(label), cand, row.number("got10k_ao", minimum=0) / 100))
    return tuple(out)


def load_experiment(ref: str) -> Experiment:
    """Read and check ``experiments/NAME.yaml`` (or a path); relative paths inside are relative to the file."""
    path = locate("experiments", ref)
    raw = read_yaml(path)
    top = Section(raw, str(path)).only(EXPERIMENT_KEYS)
    space_ref = raw.get("space")
    if isinstance(space_ref, str):
        space = load_space(space_ref)
    else:
        space_section = top.section("space")
        space = load_space(space_section.text("file", "litetrack"), space_section)
    teacher = top.section("teacher").only(("checkpoint",))
    checkpoint = teacher.optional_text("checkpoint")
    return Experiment(
        name=path.stem,
        path=path,
        description=top.optional_text("description") or "",
        architecture=top.text("architecture", "vit-b", sorted(PRESETS)),
        space=space,
        data=_parse_data(top.section("data"), path.parent),
        search=_parse_search(top.section("search")),
        finetune=dict(top.section("finetune").data),
        teacher_checkpoint=_existing(path.parent / checkpoint, teacher.where("checkpoint"), "teacher checkpoint")
        if checkpoint
        else None,
        seed=top.integer("seed", 0, minimum=0),
        reference=_parse_reference(top.section("reference")),
        evaluation_device=_parse_evaluation(top.section("evaluation")),
    )


def _parse_evaluation(section: Section) -> str | None:
    """``evaluation.device``: checked for form here; whether it exists is checked when a run starts."""
    from prunesearch.devices import DEVICE_CHOICES, is_device_name

    section.only(("device",))
    device = section.optional_text("device")
    if device is not None and not is_device_name(device):
        raise section.fail("device", DEVICE_CHOICES, device)
    return device
