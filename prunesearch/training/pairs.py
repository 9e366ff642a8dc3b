"""Training pairs: a template crop and a jittered search crop from one sequence, augmented.

Follows OSTrack's recipe (DESIGN.md): the template is a square of side ``sqrt(w*h) * 2`` around
its box; the search crop a square of side ``sqrt(w*h) * 4`` around a box whose size is jittered
by ``exp(N(0, scale_jitter))`` and whose centre moves uniformly within ``center_jitter / 2`` box
sides, so the target is rarely in the middle. Both frames come from one sequence within
``max_gap`` frames, and both are visible. Colour jitter, occasional grayscale and a horizontal
flip of the pair make the few synthetic textures go further.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from prunesearch.data.processing import box_window, crop_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError
from prunesearch.fields import checked


@dataclass(frozen=True)
class AugmentConfig:
    """Crop geometry and photometric augmentation of training pairs."""

    template_factor: float = checked(2.0, above=0, maximum=16)
    search_factor: float = checked(4.0, above=0, maximum=16)
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
    """Decoded frames, least recently used dropped first: small sequences are read many times."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def get(self, sequences: list[Sequence], seq: int, frame: int) -> np.ndarray:
        key = (seq, frame)
        img = self._frames.get(key)
        if img is None:
            img = sequences[seq].image(frame)
            self._frames[key] = img
            if len(self._frames) > self.capacity:
                self._frames.popitem(last=False)
        else:
            self._frames.move_to_end(key)
        return img


class PairSampler:
    """Draws augmented (template, search, box) batches, reproducibly from ``seed``."""

    def __init__(
        self,
        sequences: list[Sequence],
        template_size: int,
        search_size: int,
        max_gap: int = 50,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache: FrameCache | None = None,
    ) -> None:
        self.sequences = sequences
        self.template_size = template_size
        self.search_size = search_size
        self.max_gap = max_gap
        self.aug = augment or AugmentConfig()
        self.rng = np.random.default_rng(seed)
        self.cache = cache or FrameCache()
        # Frames usable as either end of a pair: visible, with a box of at least 2 x 2 pixels.
        self._usable = [
            np.flatnonzero(s.visible & (np.nan_to_num(s.boxes[:, 2]) >= 2) & (np.nan_to_num(s.boxes[:, 3]) >= 2))
            for s in sequences
        ]
        self._candidates = [i for i, u in enumerate(self._usable) if len(u) >= 1]
        if not self._candidates:
            raise PrunesearchError("no sequence has a visible target box to train on; check the dataset")

    def _pick(self) -> tuple[int, int, int]:
        seq = self._candidates[self.rng.integers(len(self._candidates))]
        usable = self._usable[seq]
        t = int(usable[self.rng.integers(len(usable))])
        near = usable[np.abs(usable - t) <= self.max_gap]
        return seq, t, int(near[self.rng.integers(len(near))])

    def _photometric(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        a = self.aug
        gains = self.rng.uniform(1 - a.brightness, 1 + a.brightness, size=3).astype(np.float32)
        gray = self.rng.random() < a.grayscale_prob
        out = []
        for c in crops:
            c = c.astype(np.float32) * gains
            if gray:
                c = np.repeat(c @ np.array([0.299, 0.587, 0.114], dtype=np.float32), 3).reshape(c.shape)
            out.append(np.clip(c, 0, 255))
        return out

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pair: template crop, search crop (RGB float32 0..255) and normalised cx, cy, w, h."""
        a = self.aug
        seq, t, s = self._pick()
        boxes = self.sequences[seq].boxes
        z = extract(self.cache.get(self.sequences, seq, t), box_window(boxes[t], a.template_factor, self.template_size))
        x, y, w, h = boxes[s]
        jw, jh = np.array([w, h]) * np.exp(self.rng.normal(0, a.scale_jitter, 2))
        shift = (self.rng.random(2) - 0.5) * math.sqrt(jw * jh) * a.center_jitter
        window = crop_window((x + w / 2 + shift[0], y + h / 2 + shift[1]), (jw, jh), a.search_factor, self.search_size)
        xc = extract(self.cache.get(self.sequences, seq, s), window)
        bx, by, bw, bh = window.box_to_crop(boxes[s]) / self.search_size
        target = np.array([bx + bw / 2, by + bh / 2, bw, bh], dtype=np.float32)
        z, xc = self._photometric([z, xc])
        if self.rng.random() < a.flip_prob:
            z, xc = z[:, ::-1], xc[:, ::-1]
            target[0] = 1 - target[0]
        return z, xc, target

    def batch(self, size: int) -> PairBatch:
        zs, xs, ts = zip(*(self.sample() for _ in range(size)))
        return PairBatch(normalize(np.stack(zs)), normalize(np.stack(xs)), torch.from_numpy(np.stack(ts)))
