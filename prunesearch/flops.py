"""Multiply-add counts and parameter counts of the trackers, per frame and per template.

Convention: one multiply-add (MAC) counts as one, as fvcore counts it; "GMACs" everywhere in
prunesearch means 1e9 multiply-adds (GFLOPs would be twice that). The analytic counts take only
matrix products and convolutions (norms, activations and softmax are under 1% of a block). A
model's count is its parts' counts times how many of each it runs
(:func:`prunesearch.models.phases.phase_parts`), the same parts and counts a latency table prices,
so FLOPs and latency speak about the same pieces.

:func:`fvcore_macs` counts the same thing by tracing the model with fvcore, phase by phase.
fvcore has no handle for ``scaled_dot_product_attention``; :func:`sdpa_macs` supplies one. fvcore
also counts norms (about 5 per element), so it lands a little above the analytic count.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prunesearch.models.phases import FramePhase, TemplatePhase, example_crops, phase_parts
from prunesearch.models.vit_tracker import AsyncTracker, TrackerBase, TrackerConfig, count_params


def _block_macs(cfg: TrackerConfig, queries: int, keys: int) -> int:
    """One pre-norm block: q/proj/MLP over the queries, k/v over the keys, two attention products."""
    c, d = cfg.embed_dim, cfg.mlp_dim
    linear = queries * c * c * 2 + keys * c * c * 2 + queries * c * d * 2
    attention = 2 * queries * keys * c
    return linear + attention


def _head_macs(cfg: TrackerConfig) -> int:
    chans = (cfg.embed_dim, *cfg.head_channels)
    per_cell = sum(a * b * 9 for a, b in zip(chans[:-1], chans[1:]))
    per_cell = 3 * per_cell + chans[-1] * (1 + 2 + 2)
    return per_cell * cfg.feat_size**2


def part_macs(cfg: TrackerConfig) -> dict[str, int]:
    """MACs of each part kind (:data:`~prunesearch.models.phases.PART_KINDS`) at this architecture's token counts."""
    nz, nx = cfg.template_tokens, cfg.search_tokens
    patch = 3 * cfg.patch_size**2 * cfg.embed_dim
    return {
        "search_embed": nx * patch,
        "template_embed": nz * patch,
        "search_block": _block_macs(cfg, nx, nx),
        "interaction_block": _block_macs(cfg, nx, nz + nx),
        "template_block": _block_macs(cfg, nz, nz),
        "joint_block": _block_macs(cfg, nz + nx, nz + nx),
        "head": _head_macs(cfg),
    }


@dataclass(frozen=True)
class ModelCost:
    """MACs of one model, split the way it runs: every frame, and once per template."""

    per_frame: int
    template: int

    @property
    def per_frame_gmacs(self) -> float:
        return self.per_frame / 1e9

    @property
    def template_gmacs(self) -> float:
        return self.template / 1e9


def model_macs(cfg: TrackerConfig, depth: int | None = None, ai_layers: int | None = None) -> ModelCost:
    """Teacher (``depth`` None) or student ``B{depth}-{ai_layers}`` (``ai_layers`` None: all ``depth``), counted from its parts."""
    p = part_macs(cfg)
    parts = phase_parts(cfg.depth, None) if depth is None else phase_parts(depth, depth if ai_layers is None else ai_layers)
    return ModelCost(
        per_frame=sum(n * p[kind] for kind, n in parts.frame.items()),
        template=sum(n * p[kind] for kind, n in parts.template.items()),
    )


def analytic_macs(model: TrackerBase) -> ModelCost:
    """:func:`model_macs` of a built model: its config, and its student spec if it has one."""
    if isinstance(model, AsyncTracker):
        return model_macs(model.cfg, model.spec.depth, model.spec.ai_layers)
    return model_macs(model.cfg)


@dataclass(frozen=True)
class PhaseParams:
    """Parameters of one model: all of them, and those each phase reads (shared ones in both)."""

    total: int
    per_frame: int
    template: int


def phase_params(model: TrackerBase) -> PhaseParams:
    """Which weights each phase touches: the teacher's template step is only the embedding."""
    embed = count_params(model.patch_embed)
    blocks = count_params(model.blocks)
    per_frame = embed + model.pos_embed_x.numel() + blocks + count_params(model.norm) + count_params(model.box_head)
    template = embed + model.pos_embed_z.numel() + (blocks if isinstance(model, AsyncTracker) else 0)
    return PhaseParams(count_params(model), per_frame, template)


def sdpa_macs(inputs: list, outputs: list) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: q @ k^T plus att @ v.

    q [..., Nq, d], k [..., Nk, d], v [..., Nk, dv] -> prod(...) * Nq * Nk * (d + dv) MACs.
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def fvcore_count(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """MACs of ``module(*inputs)`` as fvcore traces them, attention products included."""
    with warnings.catch_warnings():
        # fvcore and the tracer it uses warn that torch.jit is deprecated; the count is unaffected.
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = (
            FlopCountAnalysis(module.eval(), tuple(inputs))
            .set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        with torch.no_grad():
            return int(analysis.total())


def fvcore_macs(model: TrackerBase) -> ModelCost:
    """Per-frame and template MACs of ``model`` counted by fvcore at batch 1."""
    z, x = example_crops(model.cfg)
    with torch.no_grad():
        z_feat = model.eval().template(z)
    return ModelCost(
        per_frame=fvcore_count(FramePhase(model), (z_feat, x)),
        template=fvcore_count(TemplatePhase(model), (z,)),
    )
