"""Built-in synthetic tracking sequences, written in exact GOT-10k layout.

Why: everything in prunesearch must run on a laptop with no downloads, yet trackers must differ on
the data. Each sequence shows one textured target (a crop of a scikit-image sample image, distinct
per sequence) moving smoothly over a textured, slowly panning background, with scale, aspect and
rotation change, look-alike distractors (the target's texture with its colours altered, so only the
template tells them apart), occluding bars (partial and full), illumination change, motion blur and
excursions out of view. Keeping the first box scores a low AO on it (see README).

Layout (what GOT-10k tools read)::

    {out}/{split}/list.txt
    {out}/{split}/{seq}/00000001.jpg ...
    {out}/{split}/{seq}/groundtruth.txt      x,y,w,h per frame, 4 decimals
    {out}/{split}/{seq}/absence.label        1 where the target is fully occluded or out of view
    {out}/{split}/{seq}/cover.label          visible ratio 0..8 (0 = fully occluded, 8 = fully visible)
    {out}/{split}/{seq}/cut_by_image.label   1 where the box is clipped by the image border
    {out}/{split}/{seq}/meta_info.ini

Sequence ``i`` of a split depends only on (seed, split, i), so train and val never share a
sequence and a shorter split is a prefix of a longer one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from prunesearch.data.got10k import read_got10k
from prunesearch.data.sequence import Sequence
from prunesearch.errors import InputError, StorageError
from prunesearch.outputs import output_folder
from prunesearch.paths import cache_dir

SPLITS = ("train", "val")
# Default size of the built-in splits: enough variety for the small teacher, small enough to
# generate in under a minute on 2 cores (benchmarks/synthetic_generation.py).
BUILTIN_COUNTS = {"train": 300, "val": 25}
# Ten times GOT-10k's train split; beyond it the disk check (about 1 MB a sequence) is the limit that matters.
MAX_SEQUENCES = 100_000
GENERATOR_VERSION = 2
TEXTURE_SIDE = 96
COLOUR_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
GRAY_IMAGES = ("camera", "coins", "brick", "grass", "gravel", "moon", "page", "text", "clock", "cell")


@dataclass(frozen=True)
class SynthParams:
    """Image size, sequence length and how often each difficulty appears (probabilities per sequence)."""

    width: int = 192
    height: int = 144
    min_frames: int = 50
    max_frames: int = 80
    min_size: float = 16.0  # target sqrt(w*h) in pixels at the start
    max_size: float = 40.0
    scale_change: float = 0.35  # amplitude of log-scale drift
    aspect_change: float = 0.2
    p_rotation: float = 0.4
    p_occluder: float = 0.35
    p_distractor: float = 0.7
    p_out_of_view: float = 0.1
    p_illumination: float = 0.5
    p_motion_blur: float = 0.3
    noise: float = 3.0

    def __post_init__(self) -> None:
        if self.min_frames < 8 or self.max_frames < self.min_frames:
            raise InputError(f"frames per sequence must satisfy 8 <= min <= max, got {self.min_frames}, {self.max_frames}")
        if not 4 <= self.min_size <= self.max_size <= min(self.width, self.height) / 3:
            raise InputError("target sizes must satisfy 4 <= min_size <= max_size <= a third of the image side")

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class _Object:
    """A textured shape: per-frame centre, semi-axes and angle, and its texture."""

    texture: np.ndarray  # TEXTURE_SIDE x TEXTURE_SIDE x 3 float32
    centre: np.ndarray  # [T, 2]
    axes: np.ndarray  # [T, 2] semi-axes a (x), b (y) before rotation
    angle: np.ndarray  # [T] radians
    ellipse: bool


@dataclass
class _Plan:
    """Everything one sequence shows, decided before any pixel is drawn."""

    frames: int
    background: np.ndarray  # canvas larger than the frame, float32
    pan: np.ndarray  # [T, 2] integer canvas offset
    target: _Object
    distractors: list[_Object]
    occluder: _Object | None
    gain: np.ndarray  # [T] illumination
    blur: np.ndarray  # [T] motion-blur length in pixels (0 = none)
    blur_dir: np.ndarray  # [T] radians
    attributes: dict[str, object] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _images() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled sample images as float32 RGB (no download needed)."""
    import skimage.data

    out = []
    for name in COLOUR_IMAGES:
        out.append(np.asarray(getattr(skimage.data, name)(), dtype=np.float32)[..., :3])
    for name in GRAY_IMAGES:
        g = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        out.append(np.repeat(g[..., None], 3, axis=2))
    return tuple(out)


def _texture(rng: np.random.Generator, out_w: int, out_h: int, min_side: int = 48) -> np.ndarray:
    """A random crop of a random sample image, tinted, resized to out_w x out_h."""
    import cv2

    images = _images()
    img = images[rng.integers(len(images))]
    h, w = img.shape[:2]
    side = int(rng.uniform(min_side, 0.8 * min(h, w)))
    aspect = out_w / out_h
    cw, ch = min(w, int(side * math.sqrt(aspect))), min(h, int(side / math.sqrt(aspect)))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (out_w, out_h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.6, 1.4, size=3).astype(np.float32)
    # Stretch contrast so flat crops (sky, plain walls) still carry texture.
    lo, hi = np.percentile(crop, 2), np.percentile(crop, 98)
    crop = (crop - lo) / max(hi - lo, 1.0) * rng.uniform(150, 255) + rng.uniform(0, 60)
    return np.clip(crop * tint, 0, 255).astype(np.float32)


def _lookalike(texture: np.ndarray, rng: np.random.Generator, min_difference: float = 45.0) -> np.ndarray:
    """Same texture, different colours: a channel permutation with altered gains.

    A permutation barely changes a grey texture, and a look-alike the template cannot tell apart
    tests nothing, so a colour cast is added until the mean difference reaches ``min_difference``.
    """
    perm = rng.permutation(3)
    while (perm == np.arange(3)).all():
        perm = rng.permutation(3)
    gains = rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    out = np.clip(texture[..., perm] * gains, 0, 255)
    direction = rng.normal(size=3).astype(np.float32)
    direction /= np.linalg.norm(direction)
    step = 0.0
    while np.abs(out - texture).mean() < min_difference and step < 255:
        step += 15.0
        out = np.clip(texture[..., perm] * gains + direction * step, 0, 255)
    return out


def _smooth_curve(rng: np.random.Generator, frames: int, amplitude: float, knots: int = 4) -> np.ndarray:
    """A smooth random curve in [-amplitude, amplitude] over ``frames`` (cosine-interpolated knots)."""
    values = rng.uniform(-amplitude, amplitude, size=knots)
    return _interpolate(values, frames)


def _interpolate(values: np.ndarray, frames: int) -> np.ndarray:
    """Cosine interpolation of ``values`` (knots spread evenly over the frames); works on [K] or [K, D]."""
    values = np.asarray(values, dtype=np.float64)
    t = np.linspace(0, len(values) - 1, frames)
    i = np.minimum(t.astype(int), len(values) - 2)
    f = (1 - np.cos((t - i) * np.pi)) / 2
    if values.ndim == 2:
        f = f[:, None]
    return values[i] * (1 - f) + values[i + 1] * f


def _trajectory(rng: np.random.Generator, p: SynthParams, frames: int, size: float, out_of_view: bool) -> np.ndarray:
    """Centre path through random waypoints, with small jitter; optionally leaving the image once."""
    margin = size * 0.8
    knots = int(rng.integers(3, 6))
    pts = np.stack(
        [rng.uniform(margin, p.width - margin, knots), rng.uniform(margin, p.height - margin, knots)], axis=1
    )
    # The first frame shows the whole target, however its aspect and rotation turn out.
    pts[0] = np.clip(pts[0], size + 2, [p.width - size - 2, p.height - size - 2])
    if out_of_view:
        k = int(rng.integers(1, knots))
        side = rng.integers(4)
        pts[k] = [(-size, pts[k, 1]), (p.width + size, pts[k, 1]), (pts[k, 0], -size), (pts[k, 0], p.height + size)][side]
    path = _interpolate(pts, frames)
    jitter = np.cumsum(rng.normal(0, 0.3, size=(frames, 2)), axis=0)
    return path + jitter - jitter[0]


def _make_object(
    rng: np.random.Generator, p: SynthParams, frames: int, texture: np.ndarray, size: float, out_of_view: bool = False
) -> _Object:
    aspect = math.exp(rng.uniform(-0.5, 0.5))
    log_scale = _smooth_curve(rng, frames, p.scale_change)
    log_aspect = _smooth_curve(rng, frames, p.aspect_change)
    log_scale -= log_scale[0]
    log_aspect -= log_aspect[0]
    s = size * np.exp(log_scale)
    a = s * np.sqrt(aspect * np.exp(log_aspect)) / 2
    b = s / np.sqrt(aspect * np.exp(log_aspect)) / 2
    ellipse = bool(rng.random() < 0.5)
    angle = np.zeros(frames)
    if rng.random() < p.p_rotation:
        angle = _smooth_curve(rng, frames, math.radians(60 if ellipse else 25))
        angle -= angle[0]
    return _Object(
        texture=texture,
        centre=_trajectory(rng, p, frames, size, out_of_view),
        axes=np.stack([a, b], axis=1),
        angle=angle,
        ellipse=ellipse,
    )


def _occluder(rng: np.random.Generator, p: SynthParams, frames: int, target: _Object) -> _Object:
    """A bar that sweeps across the target's path at a chosen frame, hiding it for a few frames."""
    t_cross = int(rng.integers(min(12, frames // 2), frames - 2))
    size = float(np.sqrt(target.axes[t_cross].prod()) * 2)
    half = np.array([size * rng.uniform(0.25, 0.6), size * rng.uniform(0.8, 1.5)])
    direction = rng.choice([0.0, np.pi]) + rng.uniform(-0.3, 0.3)
    if rng.random() < 0.5:  # a lying bar moving up or down
        half, direction = half[::-1].copy(), direction + np.pi / 2
    across = 2 * abs(half @ [math.cos(direction), math.sin(direction)]) + size
    speed = across / rng.uniform(6, 14)
    step = np.array([math.cos(direction), math.sin(direction)]) * speed
    meet = target.centre[t_cross] + rng.normal(0, size * 0.3, 2)
    centre = meet + (np.arange(frames) - t_cross)[:, None] * step
    return _Object(
        texture=_texture(rng, TEXTURE_SIDE, TEXTURE_SIDE),
        centre=centre,
        axes=np.repeat(half[None], frames, axis=0),
        angle=np.zeros(frames),
        ellipse=False,
    )


def _plan(rng: np.random.Generator, p: SynthParams) -> _Plan:
    frames = int(rng.integers(p.min_frames, p.max_frames + 1))
    pad = 24
    background = _texture(rng, p.width + 2 * pad, p.height + 2 * pad, min_side=96)
    pan = np.clip(np.stack([_smooth_curve(rng, frames, pad), _smooth_curve(rng, frames, pad)], 1) + pad, 0, 2 * pad)
    size = rng.uniform(p.min_size, p.max_size)
    out_of_view = bool(rng.random() < p.p_out_of_view)
    texture = _texture(rng, TEXTURE_SIDE, TEXTURE_SIDE)
    target = _make_object(rng, p, frames, texture, size, out_of_view)
    n_distractors = int(rng.integers(1, 3)) if rng.random() < p.p_distractor else 0
    distractors = [
        _make_object(rng, p, frames, _lookalike(texture, rng), size * rng.uniform(0.8, 1.25))
        for _ in range(n_distractors)
    ]
    occluder = _occluder(rng, p, frames, target) if rng.random() < p.p_occluder else None
    if occluder is not None and _overlap(_box(occluder, 0), _box(target, 0)):
        occluder = None  # the first frame must show the target unoccluded
    gain = np.ones(frames)
    if rng.random() < p.p_illumination:
        gain = 1 + _smooth_curve(rng, frames, 0.4, knots=5)
        gain /= gain[0]
    speed = np.r_[0.0, np.linalg.norm(np.diff(target.centre, axis=0), axis=1)]
    blur = np.zeros(frames, dtype=int)
    if rng.random() < p.p_motion_blur:
        blur = np.clip(np.round(speed * rng.uniform(1.0, 2.0)), 0, 9).astype(int)
        blur[0] = 0
    d = np.diff(target.centre, axis=0, prepend=target.centre[:1])
    attributes = {
        "rotation": bool(np.abs(target.angle).max() > 0),
        "distractors": n_distractors,
        "occluder": occluder is not None,
        "out_of_view": out_of_view,
        "illumination": bool(np.abs(gain - 1).max() > 0),
        "motion_blur": bool(blur.max() > 0),
        "shape": "ellipse" if target.ellipse else "rectangle",
    }
    return _Plan(frames, background, pan.astype(int), target, distractors, occluder, gain, blur,
                 np.arctan2(d[:, 1], d[:, 0]), attributes)


def _grid(p: SynthParams) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:p.height, 0:p.width].astype(np.float32)
    return xs + 0.5, ys + 0.5


def _draw(obj: _Object, t: int, grid: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The object's pixels at frame t (texture warped into the frame) and its soft alpha mask."""
    import cv2

    xs, ys = grid
    (cx, cy), (a, b), th = obj.centre[t], obj.axes[t], obj.angle[t]
    c, s = math.cos(th), math.sin(th)
    dx, dy = xs - cx, ys - cy
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    if obj.ellipse:
        dist = (np.sqrt((lx / a) ** 2 + (ly / b) ** 2) - 1) * min(a, b)
    else:
        dist = np.maximum(np.abs(lx) - a, np.abs(ly) - b)
    alpha = np.clip(0.5 - dist, 0, 1).astype(np.float32)
    # Frame pixel -> texture pixel: the texture turns and stretches with the object.
    k = 0.33 * TEXTURE_SIDE / max(a, b)
    r = np.array([[c, s], [-s, c]]) * k
    tc = np.array([TEXTURE_SIDE / 2, TEXTURE_SIDE / 2]) - r @ np.array([cx, cy])
    m = np.hstack([r, tc[:, None]])
    h, w = xs.shape
    pixels = cv2.warpAffine(obj.texture, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT)
    return pixels, alpha


def _box(obj: _Object, t: int) -> np.ndarray:
    """Axis-aligned bounding box (x1, y1, x2, y2) of the rotated shape, unclipped."""
    (cx, cy), (a, b), th = obj.centre[t], obj.axes[t], obj.angle[t]
    c, s = abs(math.cos(th)), abs(math.sin(th))
    if obj.ellipse:
        hw, hh = math.sqrt((a * c) ** 2 + (b * s) ** 2), math.sqrt((a * s) ** 2 + (b * c) ** 2)
    else:
        hw, hh = a * c + b * s, a * s + b * c
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _motion_blur(img: np.ndarray, length: int, direction: float) -> np.ndarray:
    import cv2

    k = np.zeros((length, length), dtype=np.float32)
    mid = (length - 1) / 2
    for i in range(length):
        off = i - mid
        k[int(round(mid + off * math.sin(direction))), int(round(mid + off * math.cos(direction)))] = 1
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


def _render(plan: _Plan, p: SynthParams, rng: np.random.Generator):
    """Yield (frame RGB uint8, box x,y,w,h, absent, cover 0..8, cut_by_image) per frame."""
    grid = _grid(p)
    for t in range(plan.frames):
        px, py = plan.pan[t]
        img = plan.background[py:py + p.height, px:px + p.width].copy()
        for d in plan.distractors:
            pix, alpha = _draw(d, t, grid)
            img += (pix - img) * alpha[..., None]
        pix, t_alpha = _draw(plan.target, t, grid)
        img += (pix - img) * t_alpha[..., None]
        visible = t_alpha
        if plan.occluder is not None:
            pix, o_alpha = _draw(plan.occluder, t, grid)
            img += (pix - img) * o_alpha[..., None]
            visible = t_alpha * (1 - o_alpha)
        a, b = plan.target.axes[t]
        area = (math.pi if plan.target.ellipse else 4.0) * a * b
        ratio = float(visible.sum() / area)
        img *= plan.gain[t]
        if plan.blur[t] >= 2:
            img = _motion_blur(img, int(plan.blur[t]), float(plan.blur_dir[t]))
        img += rng.normal(0, p.noise, img.shape).astype(np.float32)
        frame = np.clip(img, 0, 255).astype(np.uint8)
        x1, y1, x2, y2 = _box(plan.target, t)
        cx1, cy1 = min(max(x1, 0.0), p.width), min(max(y1, 0.0), p.height)
        cx2, cy2 = min(max(x2, 0.0), p.width), min(max(y2, 0.0), p.height)
        cut = int(x1 < 0 or y1 < 0 or x2 > p.width or y2 > p.height)
        cover = 0 if ratio < 1 / 64 else int(min(8, math.ceil(min(ratio, 1.0) * 8)))
        yield frame, np.array([cx1, cy1, cx2 - cx1, cy2 - cy1]), int(cover == 0), cover, cut


def _sequence_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS.index(split), int(index)]))


def sequence_name(split: str, index: int) -> str:
    return f"Synthetic_{split.capitalize()}_{index + 1:06d}"


def _write_sequence(folder: Path, plan: _Plan, p: SynthParams, rng: np.random.Generator, seed: int) -> None:
    import cv2

    folder.mkdir(parents=True)
    boxes, absent, cover, cut = [], [], [], []
    for t, (frame, box, ab, cv, ct) in enumerate(_render(plan, p, rng)):
        path = folder / f"{t + 1:08d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise StorageError(f"cannot write {path}; check the output folder is writable")
        boxes.append(box)
        absent.append(ab)
        cover.append(cv)
        cut.append(ct)
    np.savetxt(folder / "groundtruth.txt", np.array(boxes), fmt="%.4f", delimiter=",")
    for name, values in (("absence", absent), ("cover", cover), ("cut_by_image", cut)):
        (folder / f"{name}.label").write_text("".join(f"{v}\n" for v in values))
    meta = [
        "[METAINFO]",
        "url: prunesearch synthetic",
        "anno_fps: 10Hz",
        f"object_class: {plan.attributes['shape']}",
        "major_class: textured patch",
        "root_class: synthetic",
        "motion_class: smooth waypoints",
        "motion_adverb: " + ("fast" if np.abs(np.diff(plan.target.centre, axis=0)).max() > 4 else "slow"),
        f"resolution: ({p.width}, {p.height})",
        f"seed: {seed}",
    ] + [f"{k}: {v}" for k, v in plan.attributes.items()]
    (folder / "meta_info.ini").write_text("\n".join(meta) + "\n")


def generate(
    out_dir: str | Path, sequences: int, seed: int = 0, split: str = "train", params: SynthParams | None = None,
    threads: int | None = None,
) -> Path:
    """Write ``sequences`` synthetic sequences as a GOT-10k split under ``out_dir/split``; returns that folder.

    Sequences are written by ``threads`` threads (None: one per CPU): OpenCV
    and NumPy release the GIL for the work that counts, and each sequence draws from its own
    generator, so the files are the same byte for byte whatever the number of threads.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not 1 <= sequences <= MAX_SEQUENCES:
        raise InputError(f"--sequences must be from 1 to {MAX_SEQUENCES} (MAX_SEQUENCES), got {sequences}")
    p = params or SynthParams()
    root = Path(out_dir) / split
    if root.is_dir() and any(root.iterdir()):
        raise InputError(f"{root} already exists and is not empty; choose another --out or remove it")
    names = [sequence_name(split, i) for i in range(sequences)]
    # JPEG frames take about half a byte per pixel; the disk must hold the largest sequences.
    estimate = sequences * p.max_frames * p.width * p.height // 2
    with output_folder(root, "--out", estimate) as tmp:  # all sequences or none: a half split is not a data set

        def write(i: int) -> None:
            rng = _sequence_rng(seed, split, i)
            _write_sequence(tmp / names[i], _plan(rng, p), p, rng, seed)

        _images()  # loaded once, before the threads share it
        pool = ThreadPoolExecutor(max_workers=min(sequences, threads or os.cpu_count() or 1), thread_name_prefix="synthetic")
        try:
            list(pool.map(write, range(sequences)))  # list(): the first error is raised here
        finally:
            pool.shutdown(cancel_futures=True)  # an error or Ctrl-C waits for the sequences in hand only
        (tmp / "list.txt").write_text("\n".join(names) + "\n")
    return root


def cache_root() -> Path:
    """Where built-in splits are generated once (see :mod:`prunesearch.paths`)."""
    return cache_dir("synthetic")


def builtin_split(split: str = "val", count: int | None = None, seed: int | None = None,
                  params: SynthParams | None = None) -> Path:
    """The cached GOT-10k folder of a built-in split, generating it first if needed (atomically)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    count = BUILTIN_COUNTS[split] if count is None else int(count)
    seed = 0 if seed is None else int(seed)
    p = params or SynthParams()
    key = f"v{GENERATOR_VERSION}|{split}|{count}|{seed}|{p.key()}"
    folder = cache_root() / f"{split}-{count}-{seed}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not (folder / split / "list.txt").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            generate(tmp, count, seed, split, p)
            try:
                tmp.rename(folder)
            except OSError:
                if not (folder / split / "list.txt").is_file():  # not a concurrent winner: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / split


def builtin_sequences(split: str = "val", count: int | None = None, seed: int | None = None,
                      params: SynthParams | None = None) -> list[Sequence]:
    """The built-in split as :class:`Sequence` objects (generated into the cache on first use)."""
    return read_got10k(builtin_split(split, count, seed, params))
