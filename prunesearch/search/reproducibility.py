"""The reproducibility record kept with every search: enough to tell whether two runs are comparable.

Seed, git commit, package versions, the latency tables' hashes, fingerprints of the data and the
teacher, and the machine. ``prunesearch pareto`` refuses to mix runs whose table, data or teacher
fingerprints differ.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from prunesearch.data.sequence import Sequence

PACKAGES = ("prunesearch", "torch", "numpy", "optuna", "mlflow", "onnx", "onnxruntime", "opencv-python-headless", "pyyaml")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(train: list[Sequence], val: list[Sequence]) -> str:
    """Hash of the sequences' names, frame counts and annotations (not the pixels: fast on any dataset)."""
    digest = hashlib.sha256()
    for split, seqs in (("train", train), ("val", val)):
        digest.update(split.encode())
        for seq in seqs:
            digest.update(f"{seq.name}:{len(seq)}".encode())
            digest.update(seq.boxes.round(3).tobytes())
            digest.update(seq.visible.tobytes())
    return digest.hexdigest()


def git_commit() -> str:
    """The commit of the prunesearch source in use, ``-dirty`` if tracked files changed."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_fingerprint() -> dict[str, object]:
    """The machine that fine-tuned and scored the candidates (not the one latency is priced for)."""
    import torch

    from prunesearch.latency.runtime import machine_fingerprint, machine_info

    return {
        **machine_info(),
        "fingerprint": machine_fingerprint(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def reproducibility_record(
    seed: int,
    table_hashes: dict[str, str],
    data: str,
    teacher: str,
) -> dict[str, object]:
    return {
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "latency_tables": table_hashes,
        "data_fingerprint": data,
        "teacher_fingerprint": teacher,
        "device": device_fingerprint(),
    }
