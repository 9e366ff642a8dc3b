"""One-stream ViT trackers: the OSTrack-style joint teacher and the LiteTrack-style async student.

Both share the same parts (patch embedding, separate learned position embeddings for template and
search, pre-norm ViT blocks, a CenterNet-style box head) and the same two-phase tracking API:

* ``template(z)`` runs once per template (at initialisation, or at a template update) and returns
  what the frame step needs. For the student that is the template after all N blocks; for the
  teacher it is only the embedded template tokens, because its blocks mix template and search.
* ``frame(z_feat, x)`` runs every frame on a search crop and returns the three maps and the box.

The student ``B{N}-{M}`` runs the search tokens alone through blocks ``0..N-M-1``; in the last M
("interaction") blocks the search queries attend over ``[cached template ; search]`` keys and
values, and the template tokens are never updated. See docs/design.md for the full description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from prunesearch.errors import PrunesearchError
from prunesearch.models.names import student_name


@dataclass(frozen=True)
class TrackerConfig:
    """Architecture of a tracker family member; everything needed to rebuild its modules."""

    embed_dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 128
    search_size: int = 256
    depth: int = 12
    head_channels: tuple[int, ...] = (256, 128, 64, 32)
    layer_scale: bool = False
    final_norm: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise PrunesearchError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        for name in ("template_size", "search_size"):
            if getattr(self, name) % self.patch_size:
                raise PrunesearchError(
                    f"{name} {getattr(self, name)} is not a multiple of patch_size {self.patch_size}"
                )
        object.__setattr__(self, "head_channels", tuple(self.head_channels))

    @property
    def template_tokens(self) -> int:
        return (self.template_size // self.patch_size) ** 2

    @property
    def search_tokens(self) -> int:
        return (self.search_size // self.patch_size) ** 2

    @property
    def feat_size(self) -> int:
        """Side of the square score map (one cell per search patch)."""
        return self.search_size // self.patch_size

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["head_channels"] = list(self.head_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrackerConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PrunesearchError(f"unknown tracker config keys {unknown}; allowed: {sorted(known)}")
        return cls(**data)


# What a tracker config (from a checkpoint, whose few bytes may ask for any size) may describe,
# checked before a model is built. Generous: ViT-L and ViT-H at OSTrack's largest crops pass.
SIZE_LIMITS = {
    "embed_dim": 4096, "num_heads": 64, "depth": 64, "patch_size": 64, "template_size": 1024, "search_size": 2048,
}
MAX_MLP_RATIO = 16.0
MAX_HEAD_LAYERS, MAX_HEAD_CHANNELS = 8, 4096
MAX_PARAMS = 1_000_000_000  # 4 GB in fp32; ViT-L is 0.3 billion, ViT-H 0.63 billion


def estimate_params(cfg: TrackerConfig, blocks: int | None = None) -> int:
    """The parameter count of a tracker of ``cfg`` with ``blocks`` blocks (default ``cfg.depth``),
    computed from the config alone (equal to :func:`count_params` of the built model)."""
    d, m = cfg.embed_dim, cfg.mlp_dim
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d) + (2 * d if cfg.layer_scale else 0)
    embed = 3 * cfg.patch_size**2 * d + d + (cfg.template_tokens + cfg.search_tokens) * d
    chans = (d, *cfg.head_channels)
    head = 3 * sum(9 * cin * cout + 3 * cout for cin, cout in zip(chans, chans[1:])) + (1 + 2 + 2) * (chans[-1] + 1)
    return embed + (cfg.depth if blocks is None else blocks) * block + (2 * d if cfg.final_norm else 0) + head


def size_problem(cfg: TrackerConfig, blocks: object = None) -> str | None:
    """Why a tracker of ``cfg`` with ``blocks`` blocks (as a file gives them; None: ``cfg.depth``) must not be built (a field of the wrong type,
    out of :data:`SIZE_LIMITS`, or more than :data:`MAX_PARAMS` parameters), or None.

    Checked before any module is allocated: a checkpoint of a kilobyte can declare a config whose
    model would take hundreds of gigabytes.
    """
    def whole(value: object) -> bool:
        return type(value) is int and value >= 1

    sizes = {**{f"config {name}": getattr(cfg, name) for name in SIZE_LIMITS}, "student depth": cfg.depth if blocks is None else blocks}
    for (name, value), limit in zip(sizes.items(), (*SIZE_LIMITS.values(), SIZE_LIMITS["depth"])):
        if not whole(value) or value > limit:
            return f"{name} is {str(value)[:40]}; allowed: a whole number from 1 to {limit} (SIZE_LIMITS)"
    ratio = cfg.mlp_ratio
    if type(ratio) not in (int, float) or not 0 < ratio <= MAX_MLP_RATIO or cfg.mlp_dim < 1:
        return f"config mlp_ratio is {str(ratio)[:40]}; allowed: a number above 0 and at most {MAX_MLP_RATIO:g} (MAX_MLP_RATIO)"
    channels = cfg.head_channels
    if len(channels) > MAX_HEAD_LAYERS or not all(whole(c) and c <= MAX_HEAD_CHANNELS for c in channels):
        return (f"config head_channels is {str(channels)[:60]}; allowed: at most {MAX_HEAD_LAYERS} whole numbers "
                f"from 1 to {MAX_HEAD_CHANNELS} (MAX_HEAD_LAYERS, MAX_HEAD_CHANNELS)")
    flags = {k: v for k, v in (("layer_scale", cfg.layer_scale), ("final_norm", cfg.final_norm)) if type(v) is not bool}
    if flags or type(cfg.norm_eps) is not float or not 0 < cfg.norm_eps < 1:
        return f"config {', '.join(flags) or 'norm_eps'} has the wrong type or value; allowed: true/false flags, norm_eps from 0 to 1"
    params = estimate_params(cfg, sizes["student depth"])
    if params > MAX_PARAMS:
        return f"the model it describes has {params:,} parameters, over the limit MAX_PARAMS = {MAX_PARAMS:,}"
    return None


PRESETS: dict[str, TrackerConfig] = {
    # The paper's architecture: ViT-B/16, 128 px template, 256 px search (OSTrack-256, LiteTrack).
    "vit-b": TrackerConfig(),
    # CPU-scale stand-in of the same family: small enough that a shipped fp16 teacher stays under
    # 10 MB and a brief student fine-tune takes about a minute on 2 cores.
    "small": TrackerConfig(
        embed_dim=128,
        num_heads=4,
        template_size=64,
        search_size=128,
        head_channels=(128, 64, 32, 16),
    ),
}
DEFAULT_PRESET = "vit-b"


def get_preset(name: str) -> TrackerConfig:
    """Look a preset up by name, with a one-line error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PrunesearchError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


@dataclass(frozen=True)
class StudentSpec:
    """Which async student to build: ``B{depth}-{ai_layers}`` from the listed teacher blocks."""

    depth: int
    ai_layers: int
    blocks: tuple[int, ...] = field(default=())
    rule: str = "first"

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise PrunesearchError(f"depth must be at least 1, got {self.depth}")
        if not 1 <= self.ai_layers <= self.depth:
            raise PrunesearchError(
                f"interaction layers must be between 1 and depth ({self.depth}), got {self.ai_layers}"
            )
        if not self.blocks:
            object.__setattr__(self, "blocks", tuple(range(self.depth)))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.blocks) != self.depth:
            raise PrunesearchError(
                f"{len(self.blocks)} teacher blocks listed for a depth-{self.depth} student"
            )

    @property
    def name(self) -> str:
        return student_name(self.depth, self.ai_layers)

    def to_dict(self) -> dict:
        return {"depth": self.depth, "ai_layers": self.ai_layers, "blocks": list(self.blocks), "rule": self.rule}

    @classmethod
    def from_dict(cls, data: dict) -> "StudentSpec":
        return cls(int(data["depth"]), int(data["ai_layers"]), tuple(data.get("blocks", ())), data.get("rule", "first"))


class TrackerOutput(NamedTuple):
    """Per-frame result. Maps are [B, C, H, W] over the search crop; box is normalised cx, cy, w, h."""

    score_map: torch.Tensor
    size_map: torch.Tensor
    offset_map: torch.Tensor
    box: torch.Tensor


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, as a strided convolution."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.proj(img).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention whose keys/values may come from more tokens than the queries."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, cfg.embed_dim * 3, bias=True)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention over ``x``; with ``context``, queries from ``x`` attend over ``[context; x]``."""
        b, n, c = x.shape
        h = self.num_heads
        if context is None:
            q, k, v = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        else:
            dim = c
            q = F.linear(x, self.qkv.weight[:dim], self.qkv.bias[:dim])
            kv_in = torch.cat([context, x], dim=1)
            kv = F.linear(kv_in, self.qkv.weight[dim:], self.qkv.bias[dim:])
            q = q.reshape(b, n, h, c // h).transpose(1, 2)
            k, v = kv.reshape(b, kv_in.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block; optional CAE-style layer scales (LiteTrack checkpoints carry them).

    ``context`` (already-final template features) turns it into an interaction block: the block's
    own ``norm1`` and key/value weights project the context, and only ``x`` is updated.
    """

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg)
        if cfg.layer_scale:
            self.gamma_1 = nn.Parameter(torch.ones(cfg.embed_dim))
            self.gamma_2 = nn.Parameter(torch.ones(cfg.embed_dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = None if context is None else self.norm1(context)
        a = self.attn(self.norm1(x), ctx)
        x = x + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp(self.norm2(x))
        return x + (m if self.gamma_2 is None else self.gamma_2 * m)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CenterHead(nn.Module):
    """Three conv branches over the search feature map: centre score, box size, sub-cell offset.

    Module names follow OSTrack's ``box_head`` so its checkpoints map one to one.
    """

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__()
        self.feat_size = cfg.feat_size
        chans = (cfg.embed_dim, *cfg.head_channels)
        for branch, out in (("ctr", 1), ("offset", 2), ("size", 2)):
            for i in range(len(cfg.head_channels)):
                setattr(self, f"conv{i + 1}_{branch}", _conv_bn_relu(chans[i], chans[i + 1]))
            setattr(self, f"conv{len(chans)}_{branch}", nn.Conv2d(chans[-1], out, kernel_size=1))
        self.num_layers = len(chans)
        nn.init.constant_(getattr(self, f"conv{len(chans)}_ctr").bias, -2.19)

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def forward(self, search_tokens: torch.Tensor) -> TrackerOutput:
        b, n, c = search_tokens.shape
        fmap = search_tokens.transpose(1, 2).reshape(b, c, self.feat_size, self.feat_size)
        score = torch.sigmoid(self._branch("ctr", fmap)).clamp(1e-4, 1 - 1e-4)
        size = torch.sigmoid(self._branch("size", fmap)).clamp(1e-4, 1 - 1e-4)
        offset = self._branch("offset", fmap)
        return TrackerOutput(score, size, offset, decode_box(score, size, offset))


def decode_box(score: torch.Tensor, size: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Arg-max cell of ``score`` plus its offset, with that cell's size: [B, 4] normalised cx, cy, w, h.

    The tracking loop passes a Hann-windowed score map here; training and export pass the raw one.
    """
    b, _, h, w = score.shape
    idx = score.flatten(1).argmax(dim=1)
    iy = torch.div(idx, w, rounding_mode="floor")
    ix = idx - iy * w
    gather = idx.view(b, 1, 1).expand(b, 2, 1)
    sz = size.flatten(2).gather(2, gather).squeeze(2)
    off = offset.flatten(2).gather(2, gather).squeeze(2)
    cx = (ix.to(score.dtype) + off[:, 0]) / w
    cy = (iy.to(score.dtype) + off[:, 1]) / h
    return torch.stack([cx, cy, sz[:, 0], sz[:, 1]], dim=1)


class TrackerBase(nn.Module):
    """Parts common to teacher and student; subclasses define the block schedule."""

    def __init__(self, cfg: TrackerConfig, depth: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed_z = nn.Parameter(torch.zeros(1, cfg.template_tokens, cfg.embed_dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, cfg.search_tokens, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.box_head = CenterHead(cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed_z, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_x, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def embed_template(self, z: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(z) + self.pos_embed_z

    def embed_search(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x) + self.pos_embed_x

    def template(self, z: torch.Tensor) -> torch.Tensor:
        """Once-per-template work; returns the cached features the frame step consumes."""
        raise NotImplementedError

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        """Per-frame work on a search crop, given the cached template features."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        return self.frame(self.template(z), x)


class JointTracker(TrackerBase):
    """OSTrack-style teacher: every block attends over the concatenated [template; search] tokens."""

    kind = "joint"

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__(cfg, cfg.depth)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.embed_template(z)

    def joint_tokens(self, z_feat: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        """Token sequence entering each block and leaving the last: ``depth + 1`` tensors."""
        tokens = [torch.cat([z_feat, self.embed_search(x)], dim=1)]
        for blk in self.blocks:
            tokens.append(blk(tokens[-1]))
        return tokens

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        t = self.joint_tokens(z_feat, x)[-1]
        return self.box_head(self.norm(t[:, z_feat.shape[1]:]))


class AsyncTracker(TrackerBase):
    """LiteTrack-style student ``B{N}-{M}`` with an asynchronous, cacheable template branch."""

    kind = "async"

    def __init__(self, cfg: TrackerConfig, spec: StudentSpec) -> None:
        super().__init__(cfg, spec.depth)
        self.spec = spec

    @property
    def ai_layers(self) -> int:
        return self.spec.ai_layers

    def template(self, z: torch.Tensor) -> torch.Tensor:
        z = self.embed_template(z)
        for blk in self.blocks:
            z = blk(z)
        return z

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        x = self.embed_search(x)
        split = self.depth - self.ai_layers
        for i, blk in enumerate(self.blocks):
            x = blk(x, z_feat if i >= split else None)
        return self.box_head(self.norm(x))


def build_teacher(cfg: TrackerConfig) -> JointTracker:
    return JointTracker(cfg)


def build_student(cfg: TrackerConfig, spec: StudentSpec) -> AsyncTracker:
    """A randomly initialised student; :mod:`prunesearch.pruning` fills it from a teacher."""
    return AsyncTracker(cfg, spec)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

