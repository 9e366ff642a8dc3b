"""Where the networks run and in which precision: one reading of ``--device`` and ``precision``.

Training, evaluation and checkpoint loading all take the :class:`torch.device` resolved here, so
nothing silently stays on the CPU. ``auto`` means CUDA when torch sees a GPU, else the CPU, and
precision ``auto`` means bf16 on a CUDA device that supports it and fp32 everywhere else, so the
CPU default is the fp32 it always was. A device that does not exist is one line naming those that
do (see docs/design.md, "The system").
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from prunesearch.errors import PrunesearchError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def available() -> str:
    """What this machine offers, for error messages."""
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA GPU visible"
        return f"cpu only ({build})"
    return "cpu, " + ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count()))


def is_device_name(text: str) -> bool:
    """Whether ``text`` has the form of a device (it may still not exist here)."""
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(text).strip().lower()) is not None


def resolve_device(text: str | torch.device | None, where: str = "--device") -> torch.device:
    """``auto|cpu|cuda|cuda:N`` -> a device that exists here, or one line saying what does."""
    text = "auto" if text is None else str(text).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    found = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not found:
        raise PrunesearchError(f"{where} {text!r} is not a device; use {DEVICE_CHOICES} (here: {available()})")
    index = int(found.group(1) or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise PrunesearchError(f"{where} {text!r} does not exist on this machine; available: {available()}")
    return torch.device("cuda", index)


def resolve_precision(text: str, device: torch.device, where: str = "precision") -> str:
    """``auto|fp32|bf16|fp16`` on ``device`` -> ``fp32``, ``bf16`` or ``fp16``.

    fp16 needs CUDA (autocast on the CPU has no fp16 matmuls worth having); bf16 on CUDA needs a
    GPU that supports it (Ampere or later).
    """
    if text not in PRECISIONS:
        raise PrunesearchError(f"{where} {text!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if text == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if text == "fp16" and not cuda:
        raise PrunesearchError(f"{where} fp16 needs a CUDA device (device is {device}); use fp32 or bf16")
    if text == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise PrunesearchError(f"{where} bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or fp32")
    return text


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for ``precision`` bf16/fp16; nothing at fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """``--gpus 0,1,3`` -> (0, 1, 3), each an existing CUDA device."""
    if text is None:
        return ()
    try:
        gpus = tuple(int(g) for g in text.split(","))
    except ValueError:
        raise PrunesearchError(f"--gpus {text!r}: give a comma list of GPU indices such as 0,1") from None
    for g in gpus:
        resolve_device(f"cuda:{g}", "--gpus")
    if len(set(gpus)) != len(gpus):
        raise PrunesearchError(f"--gpus {text!r} names a GPU twice")
    return gpus


def worker_device(device: str, gpus: tuple[int, ...], index: int) -> str:
    """The device worker ``index`` of a search uses: one GPU per worker, round robin over ``gpus``
    (default: every GPU) when the run is on CUDA; the given device otherwise."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return str(resolved)
    if device.strip().lower().startswith("cuda:") and not gpus:
        return str(resolved)  # an explicit cuda:N keeps every worker on that GPU
    pool = gpus or tuple(range(torch.cuda.device_count()))
    return f"cuda:{pool[index % len(pool)]}"


def to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Copy a batch to ``device``; non-blocking from pinned memory."""
    return tuple(t.to(device, non_blocking=True) for t in batch)
