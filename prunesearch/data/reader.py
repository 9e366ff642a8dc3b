"""What a dataset reader declares: its name, how to recognise its layout, how to read a split, how it is scored.

Each reader module (:mod:`~prunesearch.data.got10k`, :mod:`~prunesearch.data.lasot`) defines one
:class:`DatasetReader` as ``READER``; :mod:`prunesearch.data.datasets` registers them, and opening a
folder, the "holds no dataset" error and the metrics' choice of denominator all read that registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunesearch.data.sequence import Sequence


@dataclass(frozen=True)
class Scoring:
    """The one place the datasets' own toolkits score the same boxes differently.

    Every dataset gets both protocols of :mod:`prunesearch.evaluation.metrics` (GOT-10k's AO and
    SR pooled over frames, OTB/LaSOT success and precision averaged over sequences). What differs
    is the denominator of the OTB/LaSOT curves: LaSOT's toolkit divides by every frame, so frames
    whose target is absent count as failures; pytracking's rule for the other datasets (GOT-10k,
    OTB, synthetic) leaves them out.
    """

    absent_frames_fail: bool = False


@dataclass(frozen=True)
class DatasetReader:
    """One on-disk dataset layout.

    ``name`` is what its sequences carry as ``Sequence.dataset``; ``layout`` describes the folder
    for the error naming every layout a path did not hold; ``detect(path)`` recognises it without
    reading annotations; ``read(path, split)`` gives every sequence of the split (None: the
    reader's default split).
    """

    name: str
    layout: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, str | None], list[Sequence]]
    scoring: Scoring = Scoring()
