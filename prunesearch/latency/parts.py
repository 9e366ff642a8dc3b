"""The pieces a latency table prices, as stand-alone modules at one architecture's shapes.

The profiler times each part kind on its own; calibration and validation time whole per-frame graphs. Both
are built from the tracker's own modules, so a part computes exactly what it computes inside the
tracker, at exactly its token counts.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from prunesearch.models.phases import FRAME_INPUTS, FRAME_OUTPUTS, FramePhase
from prunesearch.models.vit_tracker import Block, StudentSpec, TrackerBase, TrackerConfig, build_student, build_teacher

FIXED = "fixed"


def part_shapes(cfg: TrackerConfig) -> dict[str, dict[str, int | list[int]]]:
    """The shape signature of each priced part: what an entry must match to price ``cfg``."""
    nz, nx = cfg.template_tokens, cfg.search_tokens
    block = {"width": cfg.embed_dim, "heads": cfg.num_heads, "mlp": cfg.mlp_dim}
    embed = {"width": cfg.embed_dim, "patch": cfg.patch_size}
    return {
        FIXED: {"search_size": cfg.search_size, "template_tokens": nz, "width": cfg.embed_dim},
        "search_embed": {**embed, "image": cfg.search_size},
        "template_embed": {**embed, "image": cfg.template_size},
        "search_block": {**block, "queries": nx, "keys": nx},
        "interaction_block": {**block, "queries": nx, "keys": nz + nx},
        "template_block": {**block, "queries": nz, "keys": nz},
        "joint_block": {**block, "queries": nz + nx, "keys": nz + nx},
        "head": {"width": cfg.embed_dim, "feat": cfg.feat_size, "channels": list(cfg.head_channels)},
    }


class _Embed(nn.Module):
    """Patch embedding plus position embedding of one crop (template or search)."""

    def __init__(self, model: TrackerBase, search: bool) -> None:
        super().__init__()
        self.model, self.search = model, search

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.model.embed_search(img) if self.search else self.model.embed_template(img)


class _BlockChain(nn.Module):
    """``repeat`` distinct blocks in a row, each given the same context (interaction) or none.

    Distinct weights matter: a block repeated with the same weights finds them in cache, which
    the blocks of a real tracker do not.
    """

    def __init__(self, cfg: TrackerConfig, repeat: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(repeat))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, context)
        return x


class _Head(nn.Module):
    """Final norm, centre head and box decoding: everything after the last block."""

    def __init__(self, model: TrackerBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.box_head(self.model.norm(x)))


class NullFrame(nn.Module):
    """The per-frame graph's inputs and outputs with (almost) no work: the cost of one graph run."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.fs = cfg.feat_size

    def forward(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fs = self.fs
        return x[:, :1, :fs, :fs], x[:, 1:3, :fs, :fs], x[:, :2, :fs, :fs], z_feat[:, 0, :4]


OUTPUTS = list(FRAME_OUTPUTS)


BLOCK_KINDS = ("search_block", "interaction_block", "template_block", "joint_block")


def frame_inputs(cfg: TrackerConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Example per-frame inputs: cached template features and a search crop, batch 1."""
    return torch.randn(1, cfg.template_tokens, cfg.embed_dim), torch.randn(1, 3, cfg.search_size, cfg.search_size)


def _shell(cfg: TrackerConfig) -> TrackerBase:
    """A one-block tracker: its embeddings, norm and head are the parts; the block is not used."""
    return build_teacher(replace(cfg, depth=1))


def part_graph(cfg: TrackerConfig, kind: str, repeat: int = 1) -> "Graph":
    """``(module, example inputs, input names, output names)`` of one part kind at batch 1.

    Block kinds are built as a chain of ``repeat`` distinct blocks; ``fixed`` is :class:`NullFrame`.
    """
    torch.manual_seed(0)
    nz, nx, c = cfg.template_tokens, cfg.search_tokens, cfg.embed_dim
    if kind == FIXED:
        return NullFrame(cfg), frame_inputs(cfg), ["z_feat", "x"], OUTPUTS
    if kind in ("search_embed", "template_embed"):
        search = kind == "search_embed"
        size = cfg.search_size if search else cfg.template_size
        return _Embed(_shell(cfg), search), (torch.randn(1, 3, size, size),), ["image"], ["tokens"]
    if kind == "head":
        return _Head(_shell(cfg)), (torch.randn(1, nx, c),), ["tokens"], OUTPUTS
    chain = _BlockChain(cfg, repeat)
    if kind == "interaction_block":
        return chain, (torch.randn(1, nx, c), torch.randn(1, nz, c)), ["tokens", "context"], ["out"]
    tokens = {"search_block": nx, "template_block": nz, "joint_block": nz + nx}
    if kind in tokens:
        return chain, (torch.randn(1, tokens[kind], c),), ["tokens"], ["out"]
    raise ValueError(f"no graph for part kind {kind!r}")


Graph = tuple[nn.Module, tuple[torch.Tensor, ...], list[str], list[str]]


def whole_graph(cfg: TrackerConfig, depth: int, ai_layers: int | None) -> Graph:
    """The whole per-frame graph of student ``B{depth}-{ai_layers}`` (``ai_layers`` None: the teacher)."""
    torch.manual_seed(0)
    model = build_teacher(cfg) if ai_layers is None else build_student(cfg, StudentSpec(depth, ai_layers))
    return FramePhase(model), frame_inputs(cfg), list(FRAME_INPUTS), OUTPUTS
