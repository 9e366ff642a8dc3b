"""A real-scale rehearsal without downloads: an OSTrack training checkpoint and a GOT-10k folder.

The checkpoint has OSTrack's own layout: random ViT weights under ``net`` with upstream's key
names (``backbone.*`` with the pre-training ``cls_token``/``pos_embed`` leftovers, ``box_head.*``)
beside a pickled ``lib.train.admin.settings.Settings`` object carrying ``search_area_factor``, as
OSTrack's training writes it; loading it needs :func:`prunesearch.checkpoints.extract`. The data
folder holds synthetic sequences at real frame sizes (1280x720 JPEGs by default). The tests,
``benchmarks/gpu_rehearsal.py`` and ``benchmarks/pair_pipeline.py`` build both from here.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import torch

from prunesearch.data.processing import CropGeometry
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.models.vit_tracker import TrackerConfig, build_teacher

SETTINGS_MODULE = "lib.train.admin.settings"


def ostrack_state(cfg: TrackerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised joint tracker's weights under OSTrack's key names."""
    torch.manual_seed(seed)
    state = build_teacher(cfg).state_dict()
    net = {(k if k.startswith("box_head.") else f"backbone.{k}"): v for k, v in state.items()}
    net = {k: v for k, v in net.items() if not k.endswith("num_batches_tracked")}
    net["backbone.cls_token"] = torch.zeros(1, 1, cfg.embed_dim)
    net["backbone.pos_embed"] = torch.zeros(1, 197, cfg.embed_dim)  # the 224-px pre-training table
    return net


@contextmanager
def _upstream_settings_class() -> Iterator[type]:
    """OSTrack's ``Settings`` class, importable only while the checkpoint is being pickled."""
    names = ["lib", "lib.train", "lib.train.admin", SETTINGS_MODULE]
    added = [n for n in names if n not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    settings_cls = type("Settings", (), {"__module__": SETTINGS_MODULE})
    sys.modules[SETTINGS_MODULE].Settings = settings_cls  # type: ignore[attr-defined]
    try:
        yield settings_cls
    finally:
        for name in added:
            del sys.modules[name]


def write_ostrack_checkpoint(path: str | Path, cfg: TrackerConfig, crop: CropGeometry, seed: int = 0) -> Path:
    """An OSTrack training checkpoint (``checkpoints/train/ostrack/.../OSTrack_ep0300.pth.tar``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _upstream_settings_class() as settings_cls:
        settings = settings_cls()
        settings.__dict__.update(
            script_name="ostrack",
            config_name="vitb_256_mae_ce_32x4_ep300",
            search_area_factor={"template": crop.template_factor, "search": crop.search_factor},
            output_sz={"template": cfg.template_size, "search": cfg.search_size},
            center_jitter_factor={"template": 0, "search": 3},
            scale_jitter_factor={"template": 0, "search": 0.25},
            batchsize=32,
        )
        torch.save(
            {"epoch": 300, "actor_type": "OSTrackActor", "net_type": "OSTrack", "net": ostrack_state(cfg, seed),
             "settings": settings, "stats": None},
            path,
        )
    return path


def write_got10k_folder(
    root: str | Path, train: int = 2, val: int = 1, frames: int = 12, width: int = 1280, height: int = 720, seed: int = 0
) -> Path:
    """``root/train`` and ``root/val`` in GOT-10k's layout, frames ``width`` x ``height`` JPEGs."""
    params = SynthParams(
        width=width, height=height, min_frames=frames, max_frames=frames, min_size=height / 12, max_size=height / 5
    )
    for split, count in (("train", train), ("val", val)):
        generate(root, count, seed=seed, split=split, params=params)
    return Path(root)
