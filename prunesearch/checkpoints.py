"""Saving and loading tracker weights.

prunesearch's own format is a plain dict (format tag, model kind, config, student spec, state
dict) so that the file alone rebuilds its model and loads with ``torch.load(weights_only=True)``.
Readers for OSTrack and LiteTrack checkpoints map their key names onto the same modules.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import (
    AsyncTracker,
    JointTracker,
    StudentSpec,
    TrackerBase,
    TrackerConfig,
    build_student,
    build_teacher,
)

FORMAT = "prunesearch/1"


def save_checkpoint(model: TrackerBase, path: str | Path, half: bool = False, **extra: object) -> Path:
    """Write ``model`` with the config that built it; ``half`` stores floating tensors as fp16."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().clone()
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_file(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True``, turning every failure into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise PrunesearchError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(
            f"cannot load {path} safely (weights_only=True refused it: {first}); "
            "only checkpoints holding plain tensors and containers are accepted"
        ) from None


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every parameter or fail naming the missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
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
        raise PrunesearchError(f"{source} does not match the model: " + "; ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _abbrev(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"


def load_native(payload: dict, source: str) -> TrackerBase:
    """Rebuild a model from prunesearch's own format."""
    cfg = TrackerConfig.from_dict(payload["config"])
    if payload["kind"] == JointTracker.kind:
        model: TrackerBase = build_teacher(cfg)
    else:
        model = build_student(cfg, StudentSpec.from_dict(payload["spec"]))
    load_state_strict(model, payload["state_dict"], source)
    return model.eval()


def load_checkpoint(path: str | Path) -> TrackerBase:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    payload = read_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PrunesearchError(f"{path} is not a prunesearch checkpoint (no '{FORMAT}' format tag)")
    return load_native(payload, str(path))
