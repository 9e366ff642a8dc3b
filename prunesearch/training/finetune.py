"""A brief, budgeted fine-tune of one tracker, streaming its losses through a callback.

The search calls this for every candidate: it must be reproducible from a seed, cheap enough to
run for many candidates, observable while it runs (the callback feeds MLflow and the pruner, and
can stop the run), and safe: a run whose loss or gradient turns NaN/inf stops with status
"diverged" before the bad update and never writes a checkpoint.

It runs where ``device`` says (model, teacher, losses), in ``precision`` (autocast; a gradient
scaler for fp16), with pairs decoded by ``loader_workers`` DataLoader processes into pinned memory
on a GPU. On the CPU the defaults are what they always were: fp32, decoding in this process.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from prunesearch.data.processing import CropGeometry
from prunesearch.data.sequence import Sequence
from prunesearch.devices import PRECISIONS, autocast, grad_scaler, resolve_device, resolve_precision, to_device
from prunesearch.errors import InputError, PrunesearchError
from prunesearch.fields import MAX_SEEDS, SEED_MAX, check_rules, checked, runtime_only
from prunesearch.models.vit_tracker import TrackerBase, TrackerOutput
from prunesearch.training.losses import HEATMAP_CONVENTIONS, LossWeights, tracking_loss
from prunesearch.training.pairs import PAIR_MODES, AugmentConfig, PairBatch, PairSampler, pair_batches

Callback = Callable[[int, dict[str, float]], bool]
Status = Literal["ok", "diverged", "stopped"]


MAX_LR = 1.0
_DEFAULT_WARMUP = 10


@dataclass(frozen=True)
class FinetuneConfig:
    """Budget, optimiser and data settings of one fine-tune.

    The default budget is the search's brief fine-tune of a small-preset student: about a minute
    on 2 CPU cores (benchmarks/finetune_time.py). ``backbone_lr_mult`` scales the learning rate of
    everything but the box head (0.1 when starting from teacher weights, as LiteTrack does).

    Every field's rule is checked where it is declared (``checked``), whether a file or code sets
    it. A new field is part of the search's training identity unless it is marked ``runtime=True``
    (where or how fast the fine-tune runs, not what it computes).
    """

    steps: int = checked(200, minimum=1)
    batch_size: int = checked(16, minimum=1, maximum=4096)
    lr: float = checked(4e-4, above=0)  # at most MAX_LR (checked in __post_init__)
    backbone_lr_mult: float = checked(0.1, minimum=0)
    weight_decay: float = checked(1e-4, minimum=0)
    grad_clip: float = checked(0.1, above=0)
    warmup_steps: int = checked(_DEFAULT_WARMUP, minimum=0)
    min_lr_ratio: float = checked(0.05, minimum=0, maximum=1)  # cosine decay ends at lr * min_lr_ratio
    sampling: str = checked("auto", choices=("auto", *PAIR_MODES))  # causal (real datasets) or nearby (built-in synthetic); see pairs.py
    max_gap: int | None = checked(None, minimum=1)  # None: the sampling's own (causal 200, nearby 50)
    focal_weight: float = checked(1.0, minimum=0)
    giou_weight: float = checked(2.0, minimum=0)
    l1_weight: float = checked(5.0, minimum=0)
    distill_weight: float = checked(1.0, minimum=0)  # used only when a teacher is given
    seed: int = checked(0, minimum=0, maximum=SEED_MAX)
    # Fine-tunes per candidate in a search (seeds seed, seed+1, ...): its score is their mean, and
    # its interval covers seed noise too. One fine-tune (this function) uses ``seed`` alone.
    seeds: int = checked(1, minimum=1, maximum=MAX_SEEDS)
    threads: int | None = checked(None, minimum=1, maximum=1024, runtime=True)  # torch intra-op threads; None: as set
    log_every: int = checked(10, minimum=1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = runtime_only("auto")  # auto, cpu, cuda or cuda:N
    precision: str = checked("auto", choices=PRECISIONS)  # auto (bf16 on a capable GPU, else fp32), fp32, bf16, fp16
    loader_workers: int | None = checked(None, minimum=0, runtime=True)  # None: none on the CPU, min(8, CPUs - 1) with a GPU
    # The teacher's heat-map target convention (losses.gaussian_heatmap); auto: ostrack for an
    # OSTrack or LiteTrack teacher, prunesearch for the shipped teacher and prunesearch's own files.
    heatmap: str = checked("auto", choices=("auto", *HEATMAP_CONVENTIONS))

    def __post_init__(self) -> None:
        check_rules(self, "finetune.")
        if self.lr > MAX_LR:
            raise InputError(f"finetune.lr: expected at most {MAX_LR:g} (MAX_LR: AdamW diverges at once above it), got {self.lr!r}")
        # A warm-up chosen longer than the run: the learning rate would never reach its peak. The default
        # warm-up in a run shorter than it (a quick test) is the schedule's own business and passes.
        if self.warmup_steps > self.steps and self.warmup_steps != _DEFAULT_WARMUP:
            raise InputError(f"finetune.warmup_steps: {self.warmup_steps} is longer than the run (finetune.steps {self.steps}); "
                             "the learning rate would never reach its peak: use at most as many warm-up steps as steps")

    def workers_for(self, device: torch.device) -> int:
        """Loader processes: as configured, else none on the CPU (they would take the model's
        cores) and up to 8 beside a GPU, leaving one core for the training process."""
        if self.loader_workers is not None:
            return self.loader_workers
        return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))

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


class TrainStep:
    """One optimiser step on a batch, on ``device`` in ``precision``: what a fine-tune repeats,
    and what benchmarks time without the data pipeline."""

    def __init__(self, model: TrackerBase, teacher: TrackerBase | None, cfg: FinetuneConfig,
                 device: torch.device, precision: str) -> None:
        self.model, self.cfg, self.device, self.precision = model.to(device), cfg, device, precision
        self.teacher = teacher.to(device).eval() if teacher is not None and cfg.distill_weight > 0 else None
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = grad_scaler(device, precision)

    def __call__(self, step: int, batch: PairBatch) -> tuple[dict[str, float], str]:
        """The step's loss parts, and why the run diverged ("" when it did not; no update then)."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step, self.cfg)
        template, search, boxes = to_device(batch, self.device)
        with autocast(self.device, self.precision):
            out = self.model(template, search)
            t_out = None
            if self.teacher is not None:
                with torch.no_grad():
                    t_out = self.teacher(template, search)
        # The losses in fp32: log(p) and IoUs lose too much in bf16.
        out = TrackerOutput(*(t.float() for t in out))
        t_out = None if t_out is None else TrackerOutput(*(t.float() for t in t_out))
        heatmap = "prunesearch" if self.cfg.heatmap == "auto" else self.cfg.heatmap
        loss, parts = tracking_loss(out, boxes, self.cfg.weights, t_out, heatmap)
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(parts["loss"]):
            return parts, f"loss became {parts['loss']} at step {step + 1}"
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            return parts, f"gradient norm became {grad_norm} at step {step + 1}"
        self.scaler.step(self.optimizer)  # with fp16, an overflowing step is skipped and the scale lowered
        self.scaler.update()
        return parts, ""

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def finetune(
    model: TrackerBase,
    sequences: list[Sequence],
    config: FinetuneConfig | None = None,
    teacher: TrackerBase | None = None,
    callback: Callback | None = None,
    checkpoint: str | Path | None = None,
    crop: CropGeometry | None = None,
    real_data: bool = False,
) -> FinetuneResult:
    """Train ``model`` in place for ``config.steps`` steps on pairs from ``sequences``.

    ``callback(step, metrics)`` runs every ``log_every`` steps and at the end; returning True stops
    the run (status "stopped"). With ``teacher``, its maps on the same crops are distilled. With
    ``checkpoint``, the model is saved there unless the run diverged. ``crop`` is the model's
    crop geometry; ``real_data`` makes ``sampling: auto`` causal. The model (and teacher) are
    moved to the configured device and stay there.
    """
    from prunesearch.checkpoints import save_checkpoint

    cfg = config or FinetuneConfig()
    if not sequences:
        raise PrunesearchError("no training sequences given; point the fine-tune at a dataset with sequences")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, "finetune.device")
    precision = resolve_precision(cfg.precision, device, "finetune.precision")
    torch.manual_seed(cfg.seed)
    mode = cfg.sampling if cfg.sampling != "auto" else ("causal" if real_data else "nearby")
    sampler = PairSampler(
        sequences, model.cfg.template_size, model.cfg.search_size, cfg.max_gap, cfg.augment, cfg.seed, crop=crop, mode=mode
    )
    train_step = TrainStep(model, teacher, cfg, device, precision)
    model.train()
    batches = pair_batches(sampler, cfg.steps, cfg.batch_size, cfg.workers_for(device), pin=device.type == "cuda")
    start = time.perf_counter()
    logged: list[dict[str, float]] = []
    status: Status = "ok"
    message = ""
    window: list[dict[str, float]] = []
    done = 0
    try:
        for step, batch in enumerate(batches):
            parts, diverged = train_step(step, batch)
            if diverged:
                status, message = "diverged", diverged
                break
            window.append(parts)
            done += 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                metrics = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                metrics.update(step=float(done), lr=train_step.lr,
                               seconds=time.perf_counter() - start)
                window = []
                logged.append(metrics)
                if callback is not None and callback(done, metrics) and done < cfg.steps:
                    status, message = "stopped", f"stopped by the callback at step {done}"
                    break
    finally:
        batches.close()  # stops the loader workers of a run that ended early
        model.eval()
        torch.set_num_threads(old_threads)
    result = FinetuneResult(status, done, logged, time.perf_counter() - start, message)
    if checkpoint is not None and status != "diverged":
        save_checkpoint(model, checkpoint, steps=done, final_loss=result.final_loss)
    return result
