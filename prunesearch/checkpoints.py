"""Saving and loading tracker weights: prunesearch's own format, OSTrack and LiteTrack checkpoints.

prunesearch's own format is a plain dict (format tag, model kind, config, student spec, state
dict) so that the file alone rebuilds its model and loads with ``torch.load(weights_only=True)``.

OSTrack and LiteTrack checkpoints hold only a state dict (under ``"net"``), so the architecture is
read off the tensor shapes (:func:`infer_config`) and the key names are mapped onto prunesearch's
modules, which were named after OSTrack's. The mapping is exact or it fails: every missing,
unexpected or mis-shaped key is named in one error, except the few keys listed in
:data:`KNOWN_UNUSED`, which the original trackers also leave unused at inference.

* OSTrack (``lib/models/ostrack``): ``backbone.*`` (timm ViT: ``blocks.N.attn.qkv`` with bias,
  final ``norm``, ``pos_embed_z``/``pos_embed_x`` made by ``finetune_track``) and ``box_head.*``.
  A plain joint teacher. Candidate-elimination (CE) checkpoints have the same keys; prunesearch
  runs them without token elimination, which the state dict cannot reveal.
* LiteTrack (``lib/models/litetrack/vit_cae_async.py``): CAE blocks with ``attn.q_bias`` and
  ``attn.v_bias`` (no key bias: LiteTrack concatenates zeros, so a zero key bias here is exact),
  layer scales ``gamma_1``/``gamma_2``, and no final norm (``out_with_norm=False``). Its block
  schedule matches :class:`~prunesearch.models.vit_tracker.AsyncTracker`: the first N-M blocks
  see search tokens only, the last M let search queries attend over [final template; search]
  while the template tokens stay as they are. M (``AI_LAYERS``) is not in the state dict.

Crop geometry travels with the weights where the file records it: prunesearch files under
``extra["crop"]``, OSTrack training files in their settings' ``search_area_factor``
(:func:`crop_of`). Real OSTrack training files pickle that settings object, which
``weights_only`` refuses; :func:`extract` reads them with a restricted unpickler that never runs
the file's code and writes a weights-only copy.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from prunesearch.checkpoint_file import check_tensors, open_archive, plain, read_restricted
from prunesearch.data.processing import CropGeometry
from prunesearch.errors import CheckpointError, InputError, PrunesearchError, StorageError
from prunesearch.models.vit_tracker import (
    AsyncTracker,
    JointTracker,
    StudentSpec,
    TrackerBase,
    TrackerConfig,
    build_student,
    build_teacher,
    size_problem,
)
from prunesearch.pruning import student_from_teacher

FORMAT = "prunesearch/1"
INTO = ("teacher", "student")

# Keys of real checkpoints that the original trackers never use when tracking, with the reason.
_PRETRAIN_LEFTOVERS = {
    "backbone.cls_token": "ViT pre-training class token; neither tracker puts it in the token sequence",
    "backbone.pos_embed": "224-px pre-training position table; finetune_track resampled it into "
    "pos_embed_z/pos_embed_x, which are what the trackers add",
}
KNOWN_UNUSED: dict[str, dict[str, str]] = {
    "ostrack": dict(_PRETRAIN_LEFTOVERS),
    "litetrack": {
        **_PRETRAIN_LEFTOVERS,
        # USE_CLS_TOKEN configs build a box-embedding MLP. Training (backbone mode None) prepends its
        # token and strips it again before any block, so these weights never receive a gradient;
        # LiteTrack's test-time tracker does run it through the template branch. prunesearch runs
        # the template branch as LiteTrack trained it, without that token.
        **{
            f"target_token_embed.{layer}.{p}": "LiteTrack's box token: untrained, never seen by a block in training"
            for layer in ("fc1", "fc2")
            for p in ("weight", "bias")
        },
    },
}

# AI_LAYERS of LiteTrack's published variants (experiments/litetrack/B{N}_cae_center_*.yaml).
LITETRACK_AI_LAYERS = {9: 3, 8: 3, 6: 3, 4: 2}

# OSTrack/LiteTrack configs use heads of 64 channels (ViT-S 384/6, ViT-B 768/12, ViT-L 1024/16).
HEAD_DIM = 64


def save_checkpoint(
    model: TrackerBase, path: str | Path, half: bool = False, crop: CropGeometry | None = None, **extra: object
) -> Path:
    """Write ``model`` with the config that built it; ``half`` stores floating tensors as fp16;
    ``crop`` records the geometry the model was trained with. Tensors are saved from the CPU."""
    if crop is not None:
        extra["crop"] = crop.to_dict()
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "kind": model.kind,
        "config": model.cfg.to_dict(),
        "spec": model.spec.to_dict() if isinstance(model, AsyncTracker) else None,
        "state_dict": state,
        "extra": dict(extra),
    }
    path = Path(path)
    _save_whole(payload, path, StorageError)
    return path


def _write_failure(path: Path, err: BaseException) -> str:
    """One line for a checkpoint that could not be written; torch's own error does not say "no space"."""
    full = getattr(err, "errno", None) == errno.ENOSPC or "space" in str(err).lower()
    if not full and isinstance(err, RuntimeError):
        try:
            full = shutil.disk_usage(path.parent).free < (1 << 20)
        except OSError:
            pass
    if full:
        return f"no space left in {path.parent} (writing {path.name}); free some space and run the same command again to resume"
    reason = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"cannot write {path}: {reason}"


def read_file(path: str | Path, device: torch.device | None = None) -> dict:
    """``torch.load`` with ``weights_only=True`` onto ``device`` (default the CPU), turning every
    failure into one clear line; the file's sizes are checked before torch allocates anything
    (:func:`~prunesearch.checkpoint_file.open_archive`) and its tensors after
    (:func:`~prunesearch.checkpoint_file.check_tensors`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    open_archive(path)[0].close()
    try:
        payload = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(_unsafe_reason(path, str(err))) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a dict of weights")
    check_tensors(payload, str(path))
    return payload


def _unsafe_reason(path: Path, message: str) -> str:
    """One line on why ``weights_only`` refused ``path``, and what to do."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return (
            f"refusing to load {path}: it holds a pickled Python object ({found.group(1)}, e.g. a "
            "training 'settings' record) and unpickling it could run arbitrary code; write its weights "
            f"alone once with `prunesearch checkpoint extract {path} net.pth` (which runs none of the "
            "file's code) and load net.pth"
        )
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "WeightsUnpickler" not in ln and "weights_only" not in ln), None)
    detail = detail or (lines[0] if lines else "unreadable")
    return f"cannot load {path} as a PyTorch checkpoint ({detail})"


def load_state_strict(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    ignored: tuple[str, ...] = (),
    file_key: Callable[[str], str] = str,
) -> None:
    """Load every parameter or fail naming the missing, unexpected and mis-shaped keys.

    ``file_key`` turns a model key into the name it has (or should have) in the file, so the
    error speaks the file's language.
    """
    own = model.state_dict()
    missing = sorted(file_key(k) for k in set(own) - set(state))
    unexpected = sorted(file_key(k) for k in set(state) - set(own))
    shapes = sorted(
        f"{file_key(k)} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_abbrev(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {_abbrev(shapes)}")
    if problems:
        note = f" (ignored as known-unused: {_abbrev(list(ignored))})" if ignored else ""
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems) + note)
    broken = sorted(file_key(k) for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(f"{source}: tensor {broken[0]} holds NaN or infinite values ({len(broken)} such tensors); the weights are damaged")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _abbrev(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"


def detect_format(payload: dict) -> str:
    """``"prunesearch"``, ``"ostrack"`` or ``"litetrack"``, from the file's keys alone."""
    if payload.get("format") == FORMAT:
        return "prunesearch"
    if "format" in payload:
        raise CheckpointError(f"unsupported checkpoint format {payload['format']!r}; this is {FORMAT}")
    state = _external_state(payload)
    if any(k.endswith(".attn.q_bias") or k.endswith(".gamma_1") for k in state):
        return "litetrack"
    if any(k.endswith(".attn.qkv.weight") for k in state):
        return "ostrack"
    raise CheckpointError(
        "not a prunesearch, OSTrack or LiteTrack checkpoint: no 'format' tag and no backbone.blocks.N.attn keys"
    )


def _external_state(payload: dict) -> dict[str, torch.Tensor]:
    """The state dict of an OSTrack/LiteTrack file: ``checkpoint["net"]``, or the file itself."""
    state = payload.get("net", payload)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            "checkpoint is neither a prunesearch file nor a state dict of tensors (under 'net' or at the top)"
        )
    return state


def file_key(key: str, fmt: str) -> str:
    """The name a prunesearch state-dict key has in an OSTrack or LiteTrack file."""
    if key.startswith("box_head."):
        return key
    if fmt == "litetrack" and key.endswith(".attn.qkv.bias"):
        return f"backbone.{key[: -len('qkv.bias')]}q_bias/v_bias"
    return "backbone." + key


def map_external(state: dict[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """OSTrack/LiteTrack key names -> prunesearch's; returns the mapped state and the keys ignored.

    Keys outside ``backbone.``/``box_head.`` get a ``~`` prefix, so a strict load reports them
    as unexpected instead of matching a module by accident.
    """
    unused = KNOWN_UNUSED[fmt]
    ignored = tuple(sorted(k for k in state if k in unused))
    mapped = {}
    for key, value in state.items():
        if key in unused:
            continue
        inside = key.startswith("backbone.") or key.startswith("box_head.")
        mapped[key.removeprefix("backbone.") if inside else f"~{key}"] = value
    if fmt == "litetrack":
        for q_key in [k for k in mapped if k.endswith(".attn.q_bias")]:
            prefix = q_key[: -len("q_bias")]
            v_bias = mapped.get(prefix + "v_bias")
            if v_bias is None:
                continue
            q_bias = mapped.pop(q_key)
            mapped.pop(prefix + "v_bias")
            mapped[prefix + "qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
    return mapped, ignored


def _require(state: dict[str, torch.Tensor], key: str, source: str, ndim: int) -> torch.Size:
    """The shape of ``state[key]``, which must have ``ndim`` non-zero dimensions."""
    if key not in state:
        raise CheckpointError(f"cannot infer the architecture of {source}: key {key!r} is missing")
    shape = state[key].shape
    if len(shape) != ndim or 0 in shape:
        raise CheckpointError(f"{source}: {key} has shape {tuple(shape)[:8]}, not {ndim} non-zero dimensions")
    return shape


def _grid_size(tokens: int, patch: int, name: str, source: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise CheckpointError(f"{source}: {name} has {tokens} positions, not a square grid")
    return side * patch


def infer_config(state: dict[str, torch.Tensor], source: str, num_heads: int | None = None) -> TrackerConfig:
    """The architecture a mapped state dict implies: widths, depth, crop sizes, head channels.

    ``num_heads`` cannot be read off the weights; without it, heads of 64 channels are assumed
    (right for OSTrack and LiteTrack at every size they ship).
    """
    dim, _, patch, _ = _require(state, "patch_embed.proj.weight", source, 4)
    # At most six digits: a longer block number is an unexpected key, never a range to enumerate.
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d{1,6})\.", k))})
    if not blocks:
        raise CheckpointError(f"cannot infer the architecture of {source}: no blocks.N keys")
    if blocks != list(range(len(blocks))):
        present = set(blocks)
        absent = [b for b in range(len(blocks)) if b not in present][:6]
        raise CheckpointError(f"{source}: blocks {absent} are missing between blocks 0 and {max(blocks)}")
    head_channels = []
    while f"box_head.conv{len(head_channels) + 1}_ctr.0.weight" in state:
        head_channels.append(_require(state, f"box_head.conv{len(head_channels) + 1}_ctr.0.weight", source, 4)[0])
    if num_heads is not None and num_heads < 1:
        raise InputError(f"--heads must be at least 1, got {num_heads}")
    if num_heads is None:
        if dim % HEAD_DIM:
            raise CheckpointError(f"{source}: width {dim} is not a multiple of {HEAD_DIM}; give the number of heads")
        num_heads = dim // HEAD_DIM
    return TrackerConfig(
        embed_dim=dim,
        num_heads=num_heads,
        mlp_ratio=_require(state, "blocks.0.mlp.fc1.weight", source, 2)[0] / dim,
        patch_size=patch,
        template_size=_grid_size(_require(state, "pos_embed_z", source, 3)[1], patch, "pos_embed_z", source),
        search_size=_grid_size(_require(state, "pos_embed_x", source, 3)[1], patch, "pos_embed_x", source),
        depth=len(blocks),
        head_channels=tuple(head_channels),
        layer_scale="blocks.0.gamma_1" in state,
        final_norm="norm.weight" in state,
    )


def _fill_bn_counters(model: TrackerBase, state: dict[str, torch.Tensor]) -> None:
    """Frozen-BN heads store no ``num_batches_tracked``; it never affects inference, so add zeros."""
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)


def _load_external(payload: dict, fmt: str, source: str, ai_layers: int | None, num_heads: int | None) -> TrackerBase:
    """Build the model an OSTrack (teacher) or LiteTrack (student) file describes and load it."""
    state, ignored = map_external(_external_state(payload), fmt)
    cfg = infer_config(state, source, num_heads)
    _within_limits(cfg, cfg.depth, source)
    if fmt == "ostrack":
        model: TrackerBase = build_teacher(cfg)
    else:
        depth = cfg.depth
        ai_layers = ai_layers or LITETRACK_AI_LAYERS.get(depth)
        if ai_layers is None:
            raise InputError(
                f"{source} is a {depth}-block LiteTrack student; its interaction layers are not stored in "
                "the file, give them (--ai-layers)"
            )
        # A LiteTrack student was pruned from a 12-block ViT-B; cfg.depth names that teacher's depth.
        cfg = replace(cfg, depth=max(depth, TrackerConfig().depth))
        model = build_student(cfg, StudentSpec(depth, ai_layers))
    _fill_bn_counters(model, state)
    load_state_strict(
        model, state, source, ignored, lambda k: k[1:] if k.startswith("~") else file_key(k, fmt)
    )
    return model


def _within_limits(cfg: TrackerConfig, blocks: object, source: str) -> None:
    """The model a file describes (``blocks`` as the file gives them, None for ``cfg.depth``) is
    checked against the size limits before it is built."""
    problem = size_problem(cfg, blocks)
    if problem:
        raise CheckpointError(f"{source}: {problem}")


def load_native(payload: dict, source: str) -> TrackerBase:
    """Rebuild a model from prunesearch's own format."""
    absent = [k for k in ("kind", "config", "state_dict") if k not in payload]
    if absent:
        raise CheckpointError(f"{source} is a damaged prunesearch checkpoint: no {', '.join(absent)}")
    if not isinstance(payload["config"], dict) or not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"{source} is a damaged prunesearch checkpoint: its config or state_dict is not a dict")
    student = payload["kind"] == AsyncTracker.kind
    if not (student and isinstance(payload.get("spec"), dict) and payload["spec"]) and payload["kind"] != JointTracker.kind:
        raise CheckpointError(f"{source}: unknown model kind {str(payload['kind'])[:40]!r} or missing student spec")
    try:
        cfg = TrackerConfig.from_dict(payload["config"])
        # The student's depth is checked before StudentSpec lists its blocks (range(depth)).
        _within_limits(cfg, payload["spec"].get("depth") if student else None, source)
        spec = StudentSpec.from_dict(payload["spec"]) if student else None
    except (TypeError, ValueError, KeyError, ArithmeticError) as err:
        raise CheckpointError(f"{source}: its config or student spec does not describe a tracker ({type(err).__name__}: {err})") from None
    model = build_student(cfg, spec) if spec is not None else build_teacher(cfg)
    load_state_strict(model, payload["state_dict"], source)
    return model.eval()


def convert(
    model: TrackerBase,
    into: str,
    depth: int | None = None,
    ai_layers: int | None = None,
    rule: str | list[int] = "first",
) -> TrackerBase:
    """``model`` as a joint teacher, or as a student ``B{depth}-{ai_layers}`` of its blocks.

    A student's spec lists blocks of the original teacher: choosing blocks of a student maps them
    back through that student's own list.
    """
    if into not in INTO:
        raise InputError(f"cannot load a checkpoint into {into!r}; use one of {', '.join(INTO)}")
    joint = model
    if not isinstance(model, JointTracker):
        joint = build_teacher(replace(model.cfg, depth=model.depth))
        joint.load_state_dict(model.state_dict(), strict=True)
    if into == "teacher":
        if depth not in (None, model.depth) or ai_layers is not None:
            raise InputError("a teacher keeps every block of the checkpoint; drop the depth and interaction layers")
        return joint.eval()
    depth = depth or model.depth
    if ai_layers is None and isinstance(model, AsyncTracker) and depth == model.depth:
        ai_layers = model.ai_layers
    if ai_layers is None:
        raise InputError("a student needs its number of interaction layers (--ai-layers)")
    student = student_from_teacher(joint, depth, ai_layers, rule)
    if isinstance(model, AsyncTracker):
        origin = model.spec.blocks
        student.spec = replace(student.spec, blocks=tuple(origin[b] for b in student.spec.blocks))
    return student.eval()


@dataclass(frozen=True)
class LoadedTracker:
    """A loaded model with what its file says beside the weights."""

    model: TrackerBase
    crop: CropGeometry | None  # None where the file records none
    # ``"prunesearch"``, ``"ostrack"`` or ``"litetrack"``: the training conventions of its
    # students (e.g. the heat-map target) follow the format the teacher came from.
    source_format: str
    # What a prunesearch file records beside its weights (``steps``, ``crop``, ``stage``, ``seed``);
    # empty for other formats.
    extra: dict = field(default_factory=dict)


def load_checkpoint(path: str | Path, **options: Any) -> TrackerBase:
    """The model of :func:`load_tracker` (same options), without the crop geometry."""
    return load_tracker(path, **options).model


def load_tracker(
    path: str | Path,
    into: str | None = None,
    depth: int | None = None,
    ai_layers: int | None = None,
    rule: str | list[int] = "first",
    num_heads: int | None = None,
    device: torch.device | str | None = None,
) -> LoadedTracker:
    """Load a prunesearch, OSTrack or LiteTrack checkpoint (detected from its keys), in eval mode,
    with the crop geometry the file records (None where it records none) and its format.

    By default the model comes back as the file describes it: OSTrack as a joint teacher,
    LiteTrack as an async student (``ai_layers`` from the published variants unless given),
    prunesearch files as saved. ``into="teacher"`` or ``"student"`` (with ``depth``,
    ``ai_layers`` and a block ``rule``) converts it; ``num_heads`` overrides the 64-channel-head
    assumption for OSTrack and LiteTrack files. The weights are read onto ``device`` (default the
    CPU) and the model is built there.
    """
    from prunesearch.devices import resolve_device

    source = str(path)
    target = resolve_device(device) if device is not None else torch.device("cpu")
    payload = read_file(path, target)
    fmt = detect_format(payload)
    crop = crop_of(payload, source)
    extra = dict(payload["extra"]) if isinstance(payload.get("extra"), dict) else {}
    with torch.device(target):
        if fmt == "prunesearch":
            model = load_native(payload, source)
        else:
            # The block schedule does not change the weights: any valid M builds a LiteTrack teacher.
            build_m = 1 if into == "teacher" and fmt == "litetrack" else ai_layers
            model = _load_external(payload, fmt, source, build_m, num_heads)
        if into is None and depth is None and ai_layers in (None, getattr(model, "ai_layers", None)):
            return LoadedTracker(model.eval(), crop, fmt, extra)
        return LoadedTracker(convert(model, into or "student", depth, ai_layers, rule), crop, fmt, extra)


def crop_of(payload: dict, source: str) -> CropGeometry | None:
    """The crop factors a checkpoint records: ``extra["crop"]`` in prunesearch's format, the
    training settings' ``search_area_factor`` (``{"template": 2.0, "search": 5.0}``) in an OSTrack
    file (as :func:`extract` keeps it)."""
    recorded = (payload.get("extra") or {}).get("crop") if isinstance(payload.get("extra"), dict) else None
    if recorded is None:
        settings = payload.get("settings")
        factors = settings.get("search_area_factor") if isinstance(settings, dict) else None
        if isinstance(factors, dict) and {"template", "search"} <= set(factors):
            recorded = {"template_factor": factors["template"], "search_factor": factors["search"]}
    if recorded is None:
        return None
    if not isinstance(recorded, dict) or set(recorded) != {"template_factor", "search_factor"}:
        raise CheckpointError(f"{source}: crop geometry {recorded!r} is not template_factor and search_factor")
    try:
        return CropGeometry(**recorded)
    except PrunesearchError as err:
        raise CheckpointError(f"{source}: {err}") from None


def extract(source: str | Path, out: str | Path) -> tuple[Path, list[str]]:
    """Write the weights (``net``) and the plain parts of the settings of a training checkpoint
    (OSTrack/LiteTrack: ``net``, ``settings``, optimiser, ...) to a file ``weights_only`` loads.

    Nothing the file names is imported or called, and nothing but ``out`` is written: the file is
    read by :func:`~prunesearch.checkpoint_file.read_restricted` (zip format only, sizes checked
    before allocation), the copy is written beside ``out`` under a temporary name, checked to
    load, and renamed over ``out`` only then (a bad input leaves an existing ``out`` as it was).
    Returns the path written and the top-level keys left out (optimiser state, pickled objects
    without plain state).
    """
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    if source.resolve() == out.resolve():
        raise CheckpointError(f"extract {source} into another file, not onto itself")
    try:
        payload = read_restricted(source)
    except PrunesearchError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: one line either way
        raise CheckpointError(f"cannot read {source} as a PyTorch checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{source} holds a {type(payload).__name__}, not a dict with 'net' weights")
    net = plain(payload.get("net", payload), source)
    if not isinstance(net, dict) or not net or not all(isinstance(v, torch.Tensor) for v in net.values()):
        raise CheckpointError(f"{source} has no 'net' state dict of tensors to extract")
    kept: dict[str, object] = {"net": net}
    if "net" in payload and isinstance(settings := plain(payload.get("settings"), source), dict):
        kept["settings"] = {k: v for k, v in settings.items() if not isinstance(v, torch.Tensor)}
    left_out = sorted(str(k) for k in payload if k not in kept) if "net" in payload else []
    _save_whole(kept, out, CheckpointError, check=True)
    return out, left_out


def _save_whole(payload: dict, path: Path, error: type[PrunesearchError], check: bool = False) -> None:
    """``payload`` saved to ``path`` through a temporary file beside it (a unique name: processes
    saving at once never share one), renamed into place only when complete and, with ``check``, only
    once it loads as a checkpoint of a known format; the temporary file is removed on any failure.
    A failed write is one line of class ``error`` (:func:`_write_failure`: a full disk says how to resume).

    Not :func:`prunesearch.outputs.output_file`: torch reports a full disk as a RuntimeError, and a
    search's checkpoint needs the resume hint rather than a generic "cannot write".
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise error(_write_failure(path, err)) from None
    tmp = Path(name)
    message = None
    try:
        try:
            torch.save(payload, tmp)
            if check:
                detect_format(read_file(tmp))  # the copy must load as what it claims to be
            tmp.replace(path)
        except (OSError, RuntimeError) as err:
            message = _write_failure(path, err)
    finally:
        # Outside the handler, so torch's failed writer (and its open file) is not kept by the context.
        tmp.unlink(missing_ok=True)
    if message is not None:
        raise error(message)
