"""What makes two fine-tunes the same, and two runs of ``prunesearch run`` the same study.

Two identities, kept apart because they answer different questions:

* the **training identity** (:class:`TrainingIdentity`): everything a fine-tune's result depends
  on apart from the candidate: the teacher's and the data's fingerprints and the data settings,
  every field of the fine-tune settings (the seed among them), the crop geometry, and for a
  continued fine-tune what it continues from. With a candidate's kept teacher blocks and split it
  gives the candidate's **training key** (:meth:`TrainingIdentity.key`): two trials with the same
  key trained the same student the same way, whatever budget, target or rule name they had.
* the **pricing identity** (:class:`PricingIdentity`): what only prices a candidate: the
  deployment architecture, targets, latency tables, budget and template schedule.

A study is named after both and after the search settings that change which trials exist
(:func:`study_name`), so a re-profiled table, another budget or another fine-tune setting starts a
new study instead of silently resuming an old one. Settings objects enter whole, field by field
(:func:`canonical`): a new field of :class:`~prunesearch.training.FinetuneConfig`, ``DataSpec`` or
``SearchSettings`` is part of the identity without a change here, unless its declaration marks it
runtime-only (``checked(..., runtime=True)``, :mod:`prunesearch.fields`: a device, threads, how
many trials or workers). Paths are runtime-only too: content fingerprints stand for them, so
machines with different folders share one study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from pathlib import Path

from prunesearch.data.processing import CropGeometry
from prunesearch.fields import is_runtime
from prunesearch.search.budget import Budget
from prunesearch.search.experiment import ConfirmSettings, DataSpec, SearchSettings
from prunesearch.search.pricing import PriceBook
from prunesearch.search.space import SearchSpace
from prunesearch.training.finetune import FinetuneConfig

SHORT = 10  # hex digits of a digest in a study name
KEY = 16  # hex digits of a training key


def canonical(value: object) -> object:
    """``value`` as plain JSON: dataclasses field by field, leaving out runtime-only fields and
    those that take no part in comparing two values (derived caches)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.compare and not is_runtime(f)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        raise TypeError(f"a path ({value}) in an identity: mark its field runtime-only and fingerprint the content")
    raise TypeError(f"no canonical form for {type(value).__name__} in an identity")


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(canonical(value), sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Continued:
    """A fine-tune that goes on from another's checkpoint (the confirmation stage): how far, and
    the fingerprint of the sequences it is scored on."""

    settings: ConfirmSettings
    val: str


@dataclasses.dataclass(frozen=True)
class TrainingIdentity:
    """Everything a fine-tune's result depends on apart from the candidate (see the module docstring)."""

    teacher: str  # sha256 of the teacher's file
    data: str  # fingerprint of the training and validation sequences (reproducibility.data_fingerprint)
    data_spec: DataSpec
    finetune: FinetuneConfig  # resolved: the heat-map convention of the teacher, the experiment's seed
    crop: CropGeometry
    real_data: bool  # a dataset folder (causal pairs under ``sampling: auto``), not built-in sequences
    continued: Continued | None = None

    @property
    def digest(self) -> str:
        return digest(self)

    def continue_with(self, settings: ConfirmSettings, val: str) -> "TrainingIdentity":
        """The identity of fine-tunes continued from this one's checkpoints (the confirmation)."""
        return dataclasses.replace(self, continued=Continued(settings, val))

    def key(self, blocks: tuple[int, ...], depth: int, ai_layers: int) -> str:
        """The training key of a candidate that keeps teacher ``blocks`` with ``ai_layers`` of its
        ``depth`` blocks interacting: equal keys, the same student trained the same way."""
        return digest([self.digest, list(blocks), depth, ai_layers])[:KEY]


@dataclasses.dataclass(frozen=True)
class PricingIdentity:
    """What prices a candidate: a re-profiled or re-derived table, another budget or template
    schedule prices differently but trains nothing differently."""

    architecture: str
    targets: tuple[str, ...]
    table_hashes: dict[str, str]
    budget_ms: float
    template_update: int | None

    @classmethod
    def of(cls, architecture: str, book: PriceBook) -> "PricingIdentity":
        return cls(architecture, book.targets, dict(book.table_hashes), book.budget.ms, book.template_update)


def study_name(experiment: str, budget: Budget, training: TrainingIdentity, pricing: PricingIdentity,
               space: SearchSpace, search: SearchSettings) -> str:
    """``EXPERIMENT/TARGETS/BUDGET/DIGEST``: the digest covers both identities, the space and the
    search settings that change which trials a study holds (strategy, sampler, seeds, early stop)."""
    whole = digest({"training": training, "pricing": pricing, "space": space, "search": search})
    return f"{experiment}/{'+'.join(pricing.targets)}/{budget.text}/{whole[:SHORT]}"


def confirm_study_name(brief_study: str, settings: ConfirmSettings, val: str) -> str:
    """The confirmation study of ``brief_study``: other settings or sequences are another study,
    while the brief stage (which they do not change) is kept."""
    return f"{brief_study}/confirm/{digest(Continued(settings, val))[:SHORT]}"
