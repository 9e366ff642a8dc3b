"""Fine-tunes a candidate can settle from instead of training: the same student, trained the same way.

A settled trial records its training key (:mod:`prunesearch.search.identity`): the teacher blocks
kept, the split and everything the fine-tune depended on. A candidate whose key is already
settled is settled from that result without a fine-tune of its own: in the same study any settled
outcome (another rule yielding the same student trains, stops or diverges alike), from any other
study of the storage only a fine-tune trained to the end (an early stop there was decided against
other peers). The other studies are read in one pass (:class:`TrainedIndex`) and kept until a
worker refreshes them, before it would train.

Two searches running at once on different studies may still both train a student: the claim rule
that prevents it (see the controller) holds within one study.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from prunesearch.search.study.record import Outcome, TrialRecord


@dataclass(frozen=True)
class Source:
    """A settled fine-tune another candidate can settle from: the study that holds it and its record."""

    study: str
    record: TrialRecord

    def reference(self) -> dict[str, object]:
        """What the reusing trial records as ``reused_from``: the trial that did the fine-tune (when
        ``record`` itself reused one, that one)."""
        if self.record.reused_from is not None:
            return dict(self.record.reused_from)
        r = self.record
        return {"study": self.study, "trial": r.number, "candidate": r.candidate, "run_id": r.run_id or ""}


class TrainedIndex:
    """The fine-tunes trained to the end in every other study of a storage, by training key.

    Read in one pass over the storage when made and on :meth:`refresh`; only fine-tunes of their
    own (not results a trial reused) are kept, so each student maps to the trial that trained it.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, exclude: str) -> None:
        self.storage, self.exclude = storage, exclude
        self.sources: dict[str, Source] = {}
        self.refresh()

    @classmethod
    def of(cls, study: optuna.Study) -> "TrainedIndex":
        """The other studies of ``study``'s storage."""
        return cls(study._storage, study.study_name)

    def refresh(self) -> None:
        found: dict[str, Source] = {}
        for summary in self.storage.get_all_studies():
            if summary.study_name == self.exclude:
                continue
            study_id = self.storage.get_study_id_from_name(summary.study_name)
            for t in self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
                rec = TrialRecord.of(t)
                if rec.outcome == Outcome.TRAINED and rec.training_key and not rec.reused:
                    found.setdefault(rec.training_key, Source(summary.study_name, rec))
        self.sources = found

    def get(self, key: str | None) -> Source | None:
        return self.sources.get(key) if key else None

    def keys(self) -> set[str]:
        return set(self.sources)


def same_study_source(recs: list[TrialRecord], study: str, key: str | None, exclude: int) -> Source | None:
    """A settled trial of this study (other than ``exclude``) that trained student ``key``, or reused its result."""
    for r in recs:
        if key and r.number != exclude and r.training_key == key and r.settled:
            return Source(study, r)
    return None
