"""Training pairs: a template crop and a jittered search crop from one sequence, augmented.

Follows OSTrack's recipe (docs/design.md, "Training"): the template is a square of side
``sqrt(w*h) * template_factor`` around its box; the search crop a square of side
``sqrt(w*h) * search_factor`` (:class:`~prunesearch.data.processing.CropGeometry`) around a box
whose size is jittered by ``exp(N(0, scale_jitter))`` and whose centre moves uniformly within
``center_jitter / 2`` box sides, so the target is rarely in the middle. Both frames show the
target. ``causal`` pairs (upstream's default on real data) take the search frame after the
template, at most ``max_gap`` frames later and never the same frame; ``nearby`` pairs (the
built-in synthetic data's) take any frame within ``max_gap`` on either side. Colour jitter,
occasional grayscale and a horizontal flip of the pair make the data go further.

Pair ``i`` of a run is drawn from its own generator, seeded by ``(seed, i)``: the pairs are the
same whether one process or many DataLoader workers decode them, and in whatever order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from prunesearch.data.processing import CropGeometry, box_window, crop_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError
from prunesearch.fields import checked

PAIR_MODES = ("causal", "nearby")
DEFAULT_GAP = {"causal": 200, "nearby": 50}


@dataclass(frozen=True)
class AugmentConfig:
    """Jitter and photometric augmentation of training pairs (the crop factors are the model's)."""

    center_jitter: float = checked(3.0, minimum=0, maximum=16)
    scale_jitter: float = checked(0.25, minimum=0, maximum=4)
    brightness: float = checked(0.2, minimum=0, maximum=1)  # per-channel gain drawn from [1 - b, 1 + b]
    grayscale_prob: float = checked(0.05, minimum=0, maximum=1)
    flip_prob: float = checked(0.5, minimum=0, maximum=1)


class PairBatch(NamedTuple):
    """Normalised crops and the search-crop target box (normalised cx, cy, w, h)."""

    template: torch.Tensor  # [B, 3, Hz, Wz]
    search: torch.Tensor  # [B, 3, Hx, Wx]
    boxes: torch.Tensor  # [B, 4]


class FrameCache:
    """Decoded frames, least recently used dropped first: small sequences are read many times.

    Bounded by count and by bytes (a 1280x720 frame is 2.7 MB; each loader worker has its own).
    """

    def __init__(self, capacity: int = 4096, max_bytes: int = 1 << 30) -> None:
        self.capacity, self.max_bytes = capacity, max_bytes
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, sequences: list[Sequence], seq: int, frame: int) -> np.ndarray:
        key = (seq, frame)
        img = self._frames.get(key)
        if img is None:
            img = sequences[seq].image(frame)
            self._frames[key] = img
            self._bytes += img.nbytes
            while len(self._frames) > 1 and (len(self._frames) > self.capacity or self._bytes > self.max_bytes):
                self._bytes -= self._frames.popitem(last=False)[1].nbytes
        else:
            self._frames.move_to_end(key)
        return img


class PairSampler:
    """Draws augmented (template, search, box) pairs; pair ``i`` depends only on ``seed`` and ``i``."""

    def __init__(
        self,
        sequences: list[Sequence],
        template_size: int,
        search_size: int,
        max_gap: int | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache: FrameCache | None = None,
        crop: CropGeometry | None = None,
        mode: str = "nearby",
    ) -> None:
        if mode not in PAIR_MODES:
            raise PrunesearchError(f"pair sampling {mode!r} is unknown; use one of {', '.join(PAIR_MODES)}")
        self.sequences = sequences
        self.template_size = template_size
        self.search_size = search_size
        self.mode = mode
        self.max_gap = DEFAULT_GAP[mode] if max_gap is None else max_gap
        self.aug = augment or AugmentConfig()
        self.crop = crop or CropGeometry()
        self.seed = seed
        self.cache = cache or FrameCache()
        self._next = 0
        # Frames usable as either end of a pair: visible, with a box of at least 2 x 2 pixels.
        self._usable = [
            np.flatnonzero(s.visible & (np.nan_to_num(s.boxes[:, 2]) >= 2) & (np.nan_to_num(s.boxes[:, 3]) >= 2))
            for s in sequences
        ]
        # Template frames: any usable one, or (causal) one with a usable frame after it within the gap.
        self._starts = [
            u[:-1][np.diff(u) <= self.max_gap] if mode == "causal" else u for u in self._usable
        ]
        self._candidates = [i for i, t in enumerate(self._starts) if len(t) >= 1]
        if not self._candidates:
            need = "two visible frames within the gap" if mode == "causal" else "a visible target box"
            raise PrunesearchError(f"no sequence has {need} to train on; check the dataset")

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def _pick(self, rng: np.random.Generator) -> tuple[int, int, int]:
        seq = self._candidates[rng.integers(len(self._candidates))]
        usable, starts = self._usable[seq], self._starts[seq]
        t = int(starts[rng.integers(len(starts))])
        if self.mode == "causal":
            near = usable[(usable > t) & (usable <= t + self.max_gap)]
        else:
            near = usable[np.abs(usable - t) <= self.max_gap]
        return seq, t, int(near[rng.integers(len(near))])

    def _photometric(self, crops: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        a = self.aug
        gains = rng.uniform(1 - a.brightness, 1 + a.brightness, size=3).astype(np.float32)
        gray = rng.random() < a.grayscale_prob
        out = []
        for c in crops:
            c = c.astype(np.float32) * gains
            if gray:
                c = np.repeat(c @ np.array([0.299, 0.587, 0.114], dtype=np.float32), 3).reshape(c.shape)
            out.append(np.clip(c, 0, 255))
        return out

    def sample(self, index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair ``index`` (default: the next one): template crop, search crop (RGB float32 0..255)
        and normalised cx, cy, w, h."""
        if index is None:
            index, self._next = self._next, self._next + 1
        rng = self.rng(index)
        a = self.aug
        seq, t, s = self._pick(rng)
        boxes = self.sequences[seq].boxes
        z = extract(self.cache.get(self.sequences, seq, t), box_window(boxes[t], self.crop.template_factor, self.template_size))
        x, y, w, h = boxes[s]
        jw, jh = np.array([w, h]) * np.exp(rng.normal(0, a.scale_jitter, 2))
        shift = (rng.random(2) - 0.5) * math.sqrt(jw * jh) * a.center_jitter
        window = crop_window((x + w / 2 + shift[0], y + h / 2 + shift[1]), (jw, jh), self.crop.search_factor, self.search_size)
        xc = extract(self.cache.get(self.sequences, seq, s), window)
        bx, by, bw, bh = window.box_to_crop(boxes[s]) / self.search_size
        target = np.array([bx + bw / 2, by + bh / 2, bw, bh], dtype=np.float32)
        z, xc = self._photometric([z, xc], rng)
        if rng.random() < a.flip_prob:
            z, xc = z[:, ::-1], xc[:, ::-1]
            target[0] = 1 - target[0]
        return z, xc, target

    def batch(self, size: int) -> PairBatch:
        zs, xs, ts = zip(*(self.sample() for _ in range(size)))
        return PairBatch(normalize(np.stack(zs)), normalize(np.stack(xs)), torch.from_numpy(np.stack(ts)))


class PairDataset(Dataset):
    """Pairs ``0..length-1`` of a sampler, normalised, for a :class:`~torch.utils.data.DataLoader`."""

    def __init__(self, sampler: PairSampler, length: int) -> None:
        self.sampler, self.length = sampler, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, x, target = self.sampler.sample(index)
        return normalize(z)[0], normalize(x)[0], torch.from_numpy(target)


def _quiet_worker(_: int) -> None:
    """One OpenCV thread per loader worker: the workers are the parallelism."""
    import cv2

    cv2.setNumThreads(1)


def pair_batches(sampler: PairSampler, batches: int, batch_size: int, workers: int = 0, pin: bool = False) -> Iterator[PairBatch]:
    """``batches`` batches in order, decoded and augmented by ``workers`` processes (0: this one),
    in pinned memory when ``pin`` (for non-blocking copies to a GPU)."""
    loader = DataLoader(
        PairDataset(sampler, batches * batch_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=4 if workers else None,
        # Spawned, not forked: a search process has MLflow and read-ahead threads, and a child forked
        # while one of them holds a lock waits for it forever.
        multiprocessing_context="spawn" if workers else None,
    )
    for template, search, boxes in loader:
        yield PairBatch(template, search, boxes)
