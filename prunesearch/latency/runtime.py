"""Timing graphs the same way for profiling and for validation, and what the figures depend on.

What runs a graph (onnxruntime or PyTorch, see :mod:`prunesearch.latency.backends`) hands over a
prepared run; a :class:`Timer` times it (the host clock, or CUDA events on a GPU).

Timings on a shared or throttling machine drift; a lookup table is only useful if its entries and
the whole-graph checks see the same conditions. So every graph is timed in interleaved rounds:
each round runs every graph for about ``round_ms`` (at least once), in a shuffled order, and a
graph's figure is the median of all its runs. A burst of background load then lands on all graphs
alike instead of on whichever was being timed at that moment.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from prunesearch.errors import InputError

# "wall": elapsed time, what a deployment sees. "cpu": CPU time of the calling thread, which
# equals elapsed time on an idle machine with one intra-op thread but ignores time the thread spent
# descheduled, so a shared, busy machine can still measure what an idle one would see.
CLOCKS = ("wall", "cpu")

#: One prepared graph run (inputs bound, outputs allocated): what is timed.
GraphRun = Callable[[], object]


class Timer(Protocol):
    """Times one run of a graph, in milliseconds. The seam between timing and the device clock."""

    def __call__(self, run: GraphRun) -> float: ...


class HostTimer:
    """Elapsed (``wall``) or calling-thread CPU (``cpu``) time around a run that returns when done."""

    def __init__(self, clock: str = "wall") -> None:
        self.clock = time.thread_time if clock == "cpu" else time.perf_counter

    def __call__(self, run: GraphRun) -> float:
        start = self.clock()
        run()
        return (self.clock() - start) * 1000


class CudaEventTimer:
    """CUDA events recorded around the run on the current stream: the GPU's time, not the host's.

    The host waits only for the end event, so a run that merely enqueues work (eager PyTorch, a
    CUDA graph replay) is timed from its first kernel's queueing to its last kernel's end.
    """

    def __init__(self) -> None:
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, run: GraphRun) -> float:
        self.start.record()
        run()
        self.end.record()
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def machine_info() -> dict[str, Any]:
    """What a timing figure depends on: CPU, cores, library versions, and the load when measured."""
    try:
        from onnxruntime import __version__ as ort_version
    except ModuleNotFoundError:
        ort_version = "not installed"

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "onnxruntime": ort_version,
        "loadavg_1m": round(load[0], 2),
        **({"gpu": gpu} if (gpu := gpu_info()) else {}),
    }


def _query(command: list[str]) -> str | None:
    """A tool's output, or None where it is not installed or fails (no GPU, no driver)."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


GPU_QUERY = ("name", "driver_version", "clocks.max.sm", "clocks.max.mem", "clocks.sm", "power.limit", "persistence_mode")


@functools.lru_cache(maxsize=1)
def gpu_info() -> dict[str, Any] | None:
    """The first GPU's facts a timing depends on: model, driver, CUDA/cuDNN/TensorRT, clocks, power mode.

    From ``nvidia-smi`` and, on a Jetson, ``nvpmodel -q``; None on a machine without a CUDA GPU.
    """
    if not torch.cuda.is_available():
        return None
    info: dict[str, Any] = {
        "name": torch.cuda.get_device_name(0),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
    }
    for package in ("tensorrt", "onnxruntime-gpu"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    info.update(nvidia_smi_facts())
    power = jetson_power_mode()
    if power:
        info["nvpmodel"] = power
    return info


def nvidia_smi_facts() -> dict[str, str]:
    """The first GPU's name, driver, clocks, power limit and persistence mode from ``nvidia-smi`` ({} without it)."""
    smi = _query(["nvidia-smi", "-i", "0", f"--query-gpu={','.join(GPU_QUERY)}", "--format=csv,noheader"])
    if not smi:
        return {}
    return {k.replace(".", "_"): v.strip() for k, v in zip(GPU_QUERY, smi.splitlines()[0].split(","))}


def jetson_power_mode() -> str | None:
    """A Jetson's power mode (``nvpmodel -q``) on one line; None elsewhere."""
    power = _query(["nvpmodel", "-q"])
    return " ".join(power.split()) if power else None


def machine_fingerprint() -> str:
    """A short hash of the hardware and runtime identity (not of the load), to tell machines apart.

    A GPU's model, driver and power mode count where there is one (a CPU-only machine hashes as before).
    """
    info = machine_info()
    ident = "|".join(str(info[k]) for k in ("cpu", "cores", "machine", "system", "onnxruntime"))
    gpu = info.get("gpu")
    if gpu:
        ident += "|" + "|".join(str(gpu.get(k)) for k in ("name", "driver_version", "cuda", "nvpmodel", "power_limit"))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


@dataclass
class Timing:
    """All run times of one graph, in milliseconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    def stats(self) -> dict[str, float]:
        a = np.asarray(self.samples)
        return {
            "mean": float(a.mean()),
            "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)),
            "runs": int(a.size),
        }


@dataclass(frozen=True)
class TimingPlan:
    """How long to time: ``rounds`` interleaved rounds of about ``round_ms`` per graph.

    Before the rounds each graph runs once, then ``warmup_runs`` times to learn how many runs
    fill ``round_ms``.
    """

    rounds: int = 30
    round_ms: float = 25.0
    warmup_runs: int = 5
    seed: int = 0
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.round_ms <= 0 or self.warmup_runs < 1:
            raise InputError("timing needs at least one round of positive length")
        if self.clock not in CLOCKS:
            raise InputError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


def time_graphs(
    graphs: dict[str, GraphRun],
    plan: TimingPlan,
    timer: Timer,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Timing]:
    """Time every ``name -> run`` in interleaved rounds; ``progress(round)`` after each.

    Each graph runs once (lazy initialisation, compilation), then ``warmup_runs`` timed runs set
    how many runs fill a round; only the rounds' runs count.
    """
    runs_per_round = {}
    for name, run in graphs.items():
        run()
        warm = [timer(run) for _ in range(plan.warmup_runs)]
        runs_per_round[name] = max(1, round(plan.round_ms / max(float(np.median(warm)), 1e-3)))
    timings = {name: Timing() for name in graphs}
    order = list(graphs)
    rng = random.Random(plan.seed)
    for r in range(plan.rounds):
        rng.shuffle(order)
        for name in order:
            run, samples = graphs[name], timings[name].samples
            samples.extend(timer(run) for _ in range(runs_per_round[name]))
        if progress:
            progress(r + 1)
    return timings
