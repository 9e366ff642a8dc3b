"""Experiment files: what one search is about, apart from the device and budget given on the command line.

An experiment (``experiments/NAME.yaml``) names the deployment architecture whose latency is
priced, the candidate space, the teacher (a checkpoint, or the shipped small teacher), the data
(a GOT-10k/LaSOT folder, or built-in sequences), the brief fine-tune, the search settings and the
seed. ``prunesearch run --experiment NAME`` finds ``./experiments/NAME.yaml`` first, then the copy
shipped with the package (see :func:`prunesearch.configfile.config_dirs`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunesearch.data.datasets import BAD_FRAME_ACTIONS
from prunesearch.errors import PrunesearchError
from prunesearch.fields import INT_MAX, MAX_SEEDS, SEED_MAX, checked, runtime_only
from prunesearch.models.vit_tracker import PRESETS, TrackerConfig
from prunesearch.search.samplers import SAMPLERS
from prunesearch.search.space import Candidate, SearchSpace, load_space
from prunesearch.training.finetune import FinetuneConfig
from prunesearch.configfile import Section, locate, read_yaml

EXPERIMENT_KEYS = (
    "description", "architecture", "space", "teacher", "data", "finetune", "evaluation", "search", "seed", "reference",
)
# enumerate: every fitting student; sample: an Optuna sampler proposes; model: the planner
# (search/planner.py) picks the student most likely to improve the front; auto: enumerate when the
# students to fine-tune are no more than a fixed ``trials``, else model.
STRATEGIES = ("auto", "enumerate", "sample", "model")
AUTO = "auto"  # ``trials: auto``: the model planner stops when no untrained student can enter the front
# Built-in sequences are generated into the cache on first use (about 0.5 MB each): more than this
# is a typo, not a wish to fill the disk; a dataset folder has no such bound.
BUILTIN_MAX_SEQUENCES = 1000


@dataclass(frozen=True)
class DataSpec:
    """Training and validation sequences: a dataset folder, or the built-in synthetic ones (``path`` None).

    The folder's path is runtime-only: the search's identity holds the sequences' fingerprint instead.
    """

    path: Path | None = runtime_only(None)
    train_split: str = "train"
    val_split: str = "val"
    train_sequences: int | None = checked(None, minimum=1)
    val_sequences: int = checked(4, minimum=1)
    bad_frames: str = checked("error", choices=BAD_FRAME_ACTIONS)  # a frame that does not decode: stop, or skip it with a warning

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "built-in"


@dataclass(frozen=True)
class EarlyStop:
    """Pareto successive halving (see :mod:`prunesearch.search.early_stop`).

    ``margin``: a no-slower peer counts as better only if its loss is lower by more than this
    fraction; one noisy comparison at an early rung should not stop a future front member.
    """

    reduction: int = checked(3, minimum=2)
    rungs: int = checked(2, minimum=1)
    window: int = checked(10, minimum=1)
    margin: float = checked(0.05, minimum=0, maximum=1)


@dataclass(frozen=True)
class ConfirmSettings:
    """The confirmation stage (:mod:`prunesearch.search.confirm`): the brief front and its tied
    candidates fine-tuned further from their brief checkpoints and scored on more sequences.

    ``steps``: steps per seed on top of the brief ones (None: 4x the brief fine-tune, 5x in all);
    ``val_sequences``: validation sequences scored, the brief ones first (None: 4x the brief
    number, as many as the split holds); ``seeds``: continued fine-tunes per candidate.
    """

    steps: int | None = checked(None, minimum=1)
    val_sequences: int | None = checked(None, minimum=1)
    seeds: int = checked(1, minimum=1, maximum=MAX_SEEDS)

    def resolved(self, brief_steps: int, brief_val: int) -> "ConfirmSettings":
        return ConfirmSettings(self.steps or 4 * brief_steps, self.val_sequences or 4 * brief_val, self.seeds)


@dataclass(frozen=True)
class SearchSettings:
    """How a search proposes and settles candidates. Fields marked runtime-only say how much is
    searched and how workers share it: a re-run with more trials or workers resumes the same study."""

    # Distinct students to fine-tune; None (``auto`` in a file): until no untrained student enters
    # the front with probability ``stop_chance`` or more (search/planner.py).
    trials: int | None = checked(None, minimum=1, runtime=True)
    strategy: str = checked("auto", choices=STRATEGIES)
    stop_chance: float = checked(0.05, above=0, maximum=0.5, runtime=True)  # how much is searched, like trials
    sampler: str = checked("tpe", choices=tuple(SAMPLERS))
    seeds: tuple[Candidate, ...] = ()
    early_stop: EarlyStop | None = EarlyStop()
    workers: int = checked(1, minimum=1, runtime=True)
    # Sharing a study: a fine-tune that raises is retried this often; a worker silent for
    # grace_s seconds (it beats every heartbeat_s) is lost and its candidate trained again.
    retries: int = checked(2, minimum=0, runtime=True)
    heartbeat_s: float = checked(10.0, minimum=0.1, runtime=True)
    grace_s: float = checked(60.0, minimum=0.5, runtime=True)
    # The confirmation stage; None: none; "auto" (unset in the file): see Experiment.confirm. It
    # has a study of its own (search/identity.py), so turning it on later keeps the brief one.
    confirm: ConfirmSettings | str | None = runtime_only("auto")


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
    def confirm(self) -> ConfirmSettings | None:
        """The confirmation stage's settings, or None. Unset, it is on with a dataset folder (also
        one given by ``--data``) and off with built-in data, whose quick default run must stay
        within its ten minutes (a confirmation would about double it)."""
        if self.search.confirm == "auto":
            return ConfirmSettings() if self.data.path is not None else None
        return self.search.confirm  # type: ignore[return-value]

    @property
    def teacher_label(self) -> str:
        return str(self.teacher_checkpoint) if self.teacher_checkpoint else "shipped small teacher"

    def with_overrides(
        self,
        teacher: str | None = None,
        data: str | None = None,
        seed: int | None = None,
        trials: int | str | None = None,
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
            if not 0 <= seed <= SEED_MAX:
                raise PrunesearchError(f"--seed must be a whole number from 0 to {SEED_MAX}, got {seed}")
            out = dataclasses.replace(out, seed=seed)
        if trials is not None:
            if trials != AUTO and (isinstance(trials, str) or trials < 1):
                raise PrunesearchError(f"--trials must be a whole number >= 1 or {AUTO}, got {trials}")
            count = None if trials == AUTO else trials
            out = dataclasses.replace(out, search=dataclasses.replace(out.search, trials=count))
        return out

    def finetune_config(self) -> FinetuneConfig:
        """The experiment's ``finetune:`` keys as a :class:`~prunesearch.training.finetune.FinetuneConfig`.

        Keys, value types and ranges are checked against the dataclass's fields (nested ones too,
        e.g. ``augment``) so a typo names the key; the experiment's seed is the fine-tune seed, so
        every candidate sees the same batches.
        """
        config = Section(self.finetune, str(self.path), "finetune.").build(FinetuneConfig)
        return dataclasses.replace(config, seed=self.seed)

    def candidates(self, teacher_depth: int) -> list[Candidate]:
        """Every candidate of the space; a seed the space does not hold is an error, not a silent skip."""
        found = self.space.candidates(teacher_depth)
        outside = [c.key for c in self.search.seeds if c not in found]
        if outside:
            raise PrunesearchError(
                f"{self.path}: search.seeds: {', '.join(outside)} not in the space {self.space.source} "
                f"for a {teacher_depth}-block teacher (it holds {found[0].key} .. {found[-1].key}, {len(found)} in all)"
            )
        return found


def _existing(path: Path, where: str, what: str) -> Path:
    if not path.exists():
        raise PrunesearchError(f"{what} {path} ({where}) does not exist")
    return path.resolve()


def _parse_search(section: Section) -> SearchSettings:
    seeds = tuple(Candidate.parse(s) for s in section.text_list("seeds", []))
    settings = section.build(SearchSettings, skip=("seeds", "early_stop", "confirm", "trials"))
    early_stop = None if section.data.get("early_stop") is False else section.section("early_stop").build(EarlyStop)
    return dataclasses.replace(settings, seeds=seeds, early_stop=early_stop, confirm=_parse_confirm(section),
                               trials=_parse_trials(section))


def _parse_trials(search: Section) -> int | None:
    """``search.trials``: a whole number >= 1, or auto (None; also when unset)."""
    if search.data.get("trials", AUTO) == AUTO:
        return None
    value = search.data["trials"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT_MAX:
        raise search.fail("trials", f"a whole number >= 1 or {AUTO}", value)
    return value


def _parse_confirm(search: Section) -> ConfirmSettings | str | None:
    """``search.confirm``: false, true, or its settings; unset, "auto" (see Experiment.confirm)."""
    value = search.data.get("confirm", "auto")
    if value == "auto":
        return value
    if value is False or value is True:
        return ConfirmSettings() if value else None
    if not isinstance(value, dict):
        raise search.fail("confirm", "auto, true, false or a mapping of steps, val_sequences, seeds", value)
    return search.section("confirm").build(ConfirmSettings)


def _parse_data(section: Section, base: Path) -> DataSpec:
    path = section.optional_text("path")
    spec = section.build(DataSpec, skip=("path",))
    if path:
        return dataclasses.replace(spec, path=_existing(base / path, section.where("path"), "data folder"))
    for key in ("train_sequences", "val_sequences"):
        count = getattr(spec, key)
        if count is not None and count > BUILTIN_MAX_SEQUENCES:
            raise section.fail(key, f"at most {BUILTIN_MAX_SEQUENCES} for built-in data (set data.path for a dataset)", count)
    return spec


def _parse_reference(section: Section) -> tuple[PublishedResult, ...]:
    out = []
    for label in section.data:
        row = section.section(label).only(("depth", "ai_layers", "got10k_ao"))
        depth = row.integer("depth", minimum=1)
        # The template meets the search region in the last ai_layers of depth blocks: at most all of them.
        cand = Candidate(depth, row.integer("ai_layers", minimum=1, maximum=depth))
        out.append(PublishedResult(str(label), cand, row.number("got10k_ao", minimum=0, maximum=100) / 100))
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
    exp = Experiment(
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
        seed=top.integer("seed", 0, minimum=0, maximum=SEED_MAX),
        reference=_parse_reference(top.section("reference")),
        evaluation_device=_parse_evaluation(top.section("evaluation")),
    )
    exp.finetune_config()  # every fine-tune key is checked now, not when the first fine-tune starts
    return exp


def _parse_evaluation(section: Section) -> str | None:
    """``evaluation.device``: checked for form here; whether it exists is checked when a run starts."""
    from prunesearch.devices import DEVICE_CHOICES, is_device_name

    section.only(("device",))
    device = section.optional_text("device")
    if device is not None and not is_device_name(device):
        raise section.fail("device", DEVICE_CHOICES, device)
    return device
