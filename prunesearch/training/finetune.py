"""A brief, budgeted fine-tune of one tracker, streaming its losses through a callback.

The search calls this for every candidate: it must be reproducible from a seed, cheap enough to
run for many candidates, observable while it runs (the callback feeds MLflow and the pruner, and
can stop the run), and safe: a run whose loss or gradient turns NaN/inf stops with status
"diverged" before the bad update and never writes a checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError
from prunesearch.fields import SEED_MAX, checked
from prunesearch.models.vit_tracker import TrackerBase
from prunesearch.training.losses import LossWeights, tracking_loss
from prunesearch.training.pairs import AugmentConfig, PairSampler

Callback = Callable[[int, dict[str, float]], bool]
Status = Literal["ok", "diverged", "stopped"]


@dataclass
class FinetuneConfig:
    """Budget, optimiser and data settings of one fine-tune.

    The default budget is the search's brief fine-tune of a small-preset student: about a minute
    on 2 CPU cores (benchmarks/finetune_time.py). ``backbone_lr_mult`` scales the learning rate of
    everything but the box head (0.1 when starting from teacher weights, as LiteTrack does).
    """

    steps: int = checked(200, minimum=1)
    batch_size: int = checked(16, minimum=1, maximum=4096)
    lr: float = checked(4e-4, above=0)
    backbone_lr_mult: float = checked(0.1, minimum=0)
    weight_decay: float = checked(1e-4, minimum=0)
    grad_clip: float = checked(0.1, above=0)
    warmup_steps: int = checked(10, minimum=0)
    min_lr_ratio: float = checked(0.05, minimum=0, maximum=1)  # cosine decay ends at lr * min_lr_ratio
    max_gap: int = checked(50, minimum=1)
    focal_weight: float = checked(1.0, minimum=0)
    giou_weight: float = checked(2.0, minimum=0)
    l1_weight: float = checked(5.0, minimum=0)
    distill_weight: float = checked(1.0, minimum=0)  # used only when a teacher is given
    seed: int = checked(0, minimum=0, maximum=SEED_MAX)
    threads: int | None = checked(None, minimum=1, maximum=1024)  # torch intra-op threads; None keeps the current setting
    log_every: int = checked(10, minimum=1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise PrunesearchError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise PrunesearchError(f"lr must be a positive number, got {self.lr}")

    @property
    def weights(self) -> LossWeights:
        return LossWeights(self.focal_weight, self.giou_weight, self.l1_weight, self.distill_weight)


@dataclass
class FinetuneResult:
    """What happened: status, optimiser steps taken, logged metrics per log step, wall time."""

    status: Status
    steps: int
    losses: list[dict[str, float]]
    seconds: float
    message: str = ""

    @property
    def final_loss(self) -> float:
        return self.losses[-1]["loss"] if self.losses else float("nan")


def param_groups(model: TrackerBase, cfg: FinetuneConfig) -> list[dict]:
    """Head at the full learning rate, everything else (the backbone) at ``lr * backbone_lr_mult``."""
    head, backbone = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith("box_head.") else backbone).append(p)
    return [
        {"params": head, "lr": cfg.lr, "base_lr": cfg.lr},
        {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult, "base_lr": cfg.lr * cfg.backbone_lr_mult},
    ]


def lr_factor(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def finetune(
    model: TrackerBase,
    sequences: list[Sequence],
    config: FinetuneConfig | None = None,
    teacher: TrackerBase | None = None,
    callback: Callback | None = None,
    checkpoint: str | Path | None = None,
) -> FinetuneResult:
    """Train ``model`` in place for ``config.steps`` steps on pairs from ``sequences``.

    ``callback(step, metrics)`` runs every ``log_every`` steps and at the end; returning True stops
    the run (status "stopped"). With ``teacher``, its maps on the same crops are distilled. With
    ``checkpoint``, the model is saved there unless the run diverged.
    """
    from prunesearch.checkpoints import save_checkpoint

    cfg = config or FinetuneConfig()
    if not sequences:
        raise PrunesearchError("no training sequences given; point the fine-tune at a dataset with sequences")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    sampler = PairSampler(sequences, model.cfg.template_size, model.cfg.search_size, cfg.max_gap, cfg.augment, cfg.seed)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if teacher is not None:
        teacher.eval()
    model.train()
    start = time.perf_counter()
    logged: list[dict[str, float]] = []
    status: Status = "ok"
    message = ""
    window: list[dict[str, float]] = []
    done = 0
    try:
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, cfg)
            batch = sampler.batch(cfg.batch_size)
            out = model(batch.template, batch.search)
            t_out = None
            if teacher is not None and cfg.distill_weight > 0:
                with torch.no_grad():
                    t_out = teacher(batch.template, batch.search)
            loss, parts = tracking_loss(out, batch.boxes, cfg.weights, t_out)
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(parts["loss"]):
                status, message = "diverged", f"loss became {parts['loss']} at step {step + 1}"
                break
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            if not math.isfinite(grad_norm):
                status, message = "diverged", f"gradient norm became {grad_norm} at step {step + 1}"
                break
            optimizer.step()
            window.append(parts)
            done += 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                metrics = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                metrics.update(step=float(done), lr=optimizer.param_groups[0]["lr"],
                               seconds=time.perf_counter() - start)
                window = []
                logged.append(metrics)
                if callback is not None and callback(done, metrics) and done < cfg.steps:
                    status, message = "stopped", f"stopped by the callback at step {done}"
                    break
    finally:
        model.eval()
        torch.set_num_threads(old_threads)
    result = FinetuneResult(status, done, logged, time.perf_counter() - start, message)
    if checkpoint is not None and status != "diverged":
        save_checkpoint(model, checkpoint, steps=done, final_loss=result.final_loss)
    return result
