"""Everything one process needs to work on a search, read, checked, priced and loaded from the
command line (:class:`RunRequest`): the coordinator and each worker process build it alike."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from prunesearch.checkpoints import LoadedTracker, load_tracker
from prunesearch.data.processing import CropGeometry
from prunesearch.data.sequence import Sequence
from prunesearch.devices import resolve_device, resolve_precision, worker_device
from prunesearch.errors import PrunesearchError, StorageError
from prunesearch.models.vit_tracker import JointTracker, TrackerConfig
from prunesearch.search.budget import Budget, parse_budget
from prunesearch.search.candidate import CandidateTrainer
from prunesearch.search.controller import training_keys
from prunesearch.search.experiment import DataSpec, Experiment, load_experiment
from prunesearch.search.identity import PricingIdentity, TrainingIdentity, study_name
from prunesearch.search.mlflow_runs.schema import SearchInfo
from prunesearch.search.plot import FULL_SCALE, SMALL_SCALE, ReferencePoint
from prunesearch.search.pricing import LatencyTablePricer, PriceBook
from prunesearch.search.reproducibility import data_fingerprint, file_sha256
from prunesearch.search.space import Candidate
from prunesearch.search.study.storage import redact
from prunesearch.training.finetune import FinetuneConfig

# Fields that make two trackers the same architecture for accuracy purposes.
_ARCH_FIELDS = ("embed_dim", "num_heads", "mlp_ratio", "patch_size", "template_size", "search_size", "depth")


@dataclass(frozen=True)
class RunRequest:
    """The command line of ``prunesearch run``; ``None`` means "as the experiment file says"."""

    targets: tuple[str, ...]
    budget: str
    experiment: str = "b4-b9"
    trials: int | str | None = None  # a count or "auto"
    workers: int | None = None
    storage: str | None = None
    seed: int | None = None
    teacher: str | None = None
    data: str | None = None
    workdir: str | None = None
    template_update: int | None = None
    device: str | None = None  # --device: the fine-tunes' and evaluations' device
    gpus: tuple[int, ...] = ()  # --gpus: the GPUs the workers take one each
    template_factor: float | None = None  # --template-factor / --search-factor over the teacher's
    search_factor: float | None = None


@dataclass
class RunTimes:
    """Wall seconds of the parts of one invocation; the fine-tunes' own split is in the study's counts."""

    setup: float = 0.0
    pricing: float = 0.0
    teacher: float = 0.0
    data: float = 0.0
    study: float = 0.0
    log_search: float = 0.0
    search: float = 0.0
    export: float = 0.0
    total: float = 0.0
    _clock: float = field(default_factory=time.perf_counter, repr=False)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def lap(self, part: str) -> None:
        """Add the seconds since the last lap to ``part``; ``total`` is always since the start."""
        now = time.perf_counter()
        setattr(self, part, getattr(self, part) + now - self._clock)
        self._clock = now
        self.total = now - self._start

    def parts(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


@dataclass
class Setup:
    """Everything one process needs to work on the search (built again in each worker process)."""

    experiment: Experiment
    budget: Budget
    book: PriceBook
    teacher: JointTracker
    train: list[Sequence]
    val: list[Sequence]
    finetune_config: FinetuneConfig
    training: TrainingIdentity
    info: SearchInfo
    workdir: Path
    times: RunTimes
    crop: CropGeometry = field(default_factory=CropGeometry)
    eval_device: str | None = None
    _trainer: CandidateTrainer | None = field(default=None, init=False, repr=False)

    def trainer(self) -> CandidateTrainer:
        """The brief stage's trainer, made once (it measures the teacher's block influence once)."""
        if self._trainer is None:
            self._trainer = CandidateTrainer(
                self.teacher, self.train, self.val, self.finetune_config, self.workdir, self.crop, self.eval_device,
                real_data=self.training.real_data,
            )
        return self._trainer

    def students(self) -> dict[str, str]:
        """Every candidate's training key: candidates with one key are one student."""
        return training_keys(self.trainer(), self.training, self.book.candidates)

    def reference_points(self) -> dict[str, list[ReferencePoint]]:
        """The experiment's published variants at the latency each target's table prices them."""
        out: dict[str, list[ReferencePoint]] = {}
        for target in self.book.targets:
            out[target] = [
                ReferencePoint(r.label, r.ao, self.book.pricer.price(r.candidate)[target].priced_ms)
                for r in self.experiment.reference
            ]
        return out

    def teacher_ms(self) -> dict[str, float]:
        """The unpruned teacher's per-frame price on each target (every block joint), drawn on the plot."""
        depth = self.teacher.depth
        return {t: p.priced_ms for t, p in self.book.pricer.price(Candidate(depth, depth)).items()}


def same_architecture(a: TrackerConfig, b: TrackerConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _ARCH_FIELDS)


def load_teacher(exp: Experiment, device: str = "cpu") -> tuple[LoadedTracker, str]:
    """The experiment's teacher on ``device`` (a joint tracker, with the crop geometry and format
    of its file), and the sha256 of its file."""
    from prunesearch.teacher import SHIPPED_TEACHER, load_shipped_teacher

    if exp.teacher_checkpoint is None:
        return LoadedTracker(load_shipped_teacher().to(device), None, "prunesearch"), file_sha256(SHIPPED_TEACHER)
    loaded = load_tracker(exp.teacher_checkpoint, device=device)
    if not isinstance(loaded.model, JointTracker):
        raise PrunesearchError(
            f"teacher checkpoint {exp.teacher_checkpoint} holds a {loaded.model.kind} model; the teacher must be a joint (OSTrack-style) tracker"
        )
    return loaded, file_sha256(exp.teacher_checkpoint)


def load_data(spec: DataSpec) -> tuple[list[Sequence], list[Sequence]]:
    """Training and validation sequences: the dataset's splits, or built-in sequences (made once, cached)."""
    train, val = _split(spec, "train", spec.train_sequences), load_val(spec, spec.val_sequences)
    if not train or not val:
        raise PrunesearchError(f"{spec.path} holds no sequences in split {spec.train_split!r} or {spec.val_split!r}")
    return train, val


def load_val(spec: DataSpec, count: int) -> list[Sequence]:
    """The first ``count`` validation sequences (fewer if the split is smaller): a longer list
    starts with a shorter one's, so the confirmation stage scores the brief stage's sequences too."""
    return _split(spec, "val", count)


def _split(spec: DataSpec, which: str, count: int | None) -> list[Sequence]:
    if spec.path is None:
        from prunesearch.data.synthetic import builtin_sequences

        return builtin_sequences(which, count=count)
    from prunesearch.data import open_dataset

    return open_dataset(spec.path, spec.train_split if which == "train" else spec.val_split, count, spec.bad_frames)


def check_workdir(workdir: Path, flag: str) -> None:
    """Fail in one line, before any study or MLflow run exists, when no checkpoint could be saved in
    ``workdir`` (made when the first one is): its nearest existing folder must be a folder this
    user may write in (``os.access``: right for a non-root user, and for root on a read-only mount)."""
    existing = workdir
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as err:  # a folder on the way this user may not look into
        raise StorageError(f"{flag}: cannot look into {existing.parent} ({err.strerror}); give a writable folder") from None
    if not existing.is_dir():
        raise StorageError(f"{flag}: {existing} is not a folder; give a folder to keep the candidates' checkpoints in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"{flag}: cannot write in {existing} (read-only or not this user's); give a writable folder")


def prepare(req: RunRequest, storage: str, index: int = 0, times: RunTimes | None = None) -> Setup:
    """Read, check, price and load, cheapest checks first so bad input fails in a second.

    ``index`` is the worker this setup is for: with several GPUs, each worker takes its own.
    """
    times = times or RunTimes()
    if not req.targets:
        raise PrunesearchError("give at least one --target")
    exp = load_experiment(req.experiment).with_overrides(req.teacher, req.data, req.seed, req.trials)
    budget = parse_budget(req.budget)
    finetune_config = exp.finetune_config()
    device = worker_device(req.device or finetune_config.device, req.gpus, index)
    finetune_config = dataclasses.replace(finetune_config, device=device)
    eval_device = worker_device(req.device or exp.evaluation_device or device, req.gpus, index)
    resolve_precision(finetune_config.precision, resolve_device(device), "finetune.precision")
    times.lap("setup")
    pricer = LatencyTablePricer(tuple(dict.fromkeys(req.targets)), exp.arch, req.template_update)
    times.lap("pricing")
    loaded, teacher_fp = load_teacher(exp, device)
    teacher = loaded.model
    if finetune_config.heatmap == "auto":
        # The student learns its teacher's target: OSTrack's for external teachers.
        external = loaded.source_format != "prunesearch"
        finetune_config = dataclasses.replace(finetune_config, heatmap="ostrack" if external else "prunesearch")
    crop = (loaded.crop or CropGeometry()).override(req.template_factor, req.search_factor)
    times.lap("teacher")
    book = PriceBook(exp.candidates(teacher.depth), pricer, budget, exp.arch)
    book.require_feasible(exp.name)
    times.lap("pricing")
    train, val = load_data(exp.data)
    data_fp = data_fingerprint(train, val)
    times.lap("data")
    training = TrainingIdentity(teacher_fp, data_fp, exp.data, finetune_config, crop, real_data=exp.data.path is not None)
    study = study_name(exp.name, budget, training, PricingIdentity.of(exp.architecture, book), exp.space, exp.search)
    root = Path(req.workdir) if req.workdir else Path.cwd() / "runs"
    workdir = root.resolve() / study.replace("/", "-")
    check_workdir(workdir, f"--workdir {req.workdir}" if req.workdir else f"the default --workdir {root}")
    info = SearchInfo(
        experiment=exp.name,
        study=study,
        storage=redact(storage),
        targets=book.targets,
        budget=budget,
        architecture=exp.architecture,
        teacher=exp.teacher_label,
        teacher_fingerprint=teacher_fp,
        data=exp.data.label,
        data_fingerprint=data_fp,
        seed=exp.seed,
        accuracy_scale=FULL_SCALE if same_architecture(teacher.cfg, exp.arch) else SMALL_SCALE,
        finetune=dataclasses.asdict(finetune_config) | {"crop": crop.to_dict()},
        table_hashes=book.table_hashes,
        template_update=book.template_update,
        workdir=str(workdir),
        training_identity=training.digest,
    )
    return Setup(exp, budget, book, teacher, train, val, finetune_config, training, info, workdir, times, crop, eval_device)
