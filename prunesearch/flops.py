"""Analytic multiply-add counts of the tracker parts, per frame and per template.

Convention: one multiply-add (MAC) counts as one, as fvcore counts it; "GMACs" everywhere in
prunesearch means 1e9 multiply-adds. Only matrix products and convolutions are counted here
(norms, activations and softmax are under 1% of a block). The parts are the same ones a latency
table prices, so FLOPs and latency speak about the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunesearch.models.vit_tracker import TrackerConfig

PART_KINDS = (
    "search_embed",
    "template_embed",
    "search_block",
    "interaction_block",
    "template_block",
    "joint_block",
    "head",
)


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
    """MACs of each part kind a latency table prices, at this architecture's token counts."""
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
    """Teacher (``depth`` None) or student ``B{depth}-{ai_layers}``, counted from its parts."""
    p = part_macs(cfg)
    if depth is None:
        return ModelCost(
            per_frame=p["search_embed"] + cfg.depth * p["joint_block"] + p["head"],
            template=p["template_embed"],
        )
    m = depth if ai_layers is None else ai_layers
    return ModelCost(
        per_frame=p["search_embed"] + (depth - m) * p["search_block"] + m * p["interaction_block"] + p["head"],
        template=p["template_embed"] + depth * p["template_block"],
    )
