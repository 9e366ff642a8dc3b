"""Timing ONNX graphs with onnxruntime the same way for profiling and for validation.

Timings on a shared or throttling machine drift; a lookup table is only useful if its entries and
the whole-graph checks see the same conditions. So every graph is timed in interleaved rounds:
each round runs every graph for about ``round_ms`` (at least once), in a shuffled order, and a
graph's figure is the median of all its runs. A burst of background load then lands on all graphs
alike instead of on whichever was being timed at that moment.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesearch.errors import PrunesearchError
from prunesearch.export import export_module

PRECISIONS = ("fp32", "fp16")
# "wall": elapsed time, what a deployment sees. "cpu": CPU time of the calling thread, which
# equals elapsed time on an idle machine with one intra-op thread but ignores time the thread spent
# descheduled, so a shared, busy machine can still measure what an idle one would see.
CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class RuntimeSettings:
    """How graphs run: execution provider, intra-op threads (None: all cores), precision.

    fp16 exports the modules in half precision (inputs, weights and outputs fp16). The CPU provider
    runs such graphs too, inserting casts to fp32 around operators it has no fp16 kernel for; that
    is what a user of fp16 on that CPU gets, and it is measured as such.
    """

    provider: str = "CPUExecutionProvider"
    threads: int | None = None
    precision: str = "fp32"

    @property
    def intra_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def check(self) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.provider not in available:
            raise PrunesearchError(
                f"execution provider {self.provider} is not available in this onnxruntime "
                f"{ort.__version__} build (available: {', '.join(available)}); run on a device whose "
                "onnxruntime has it (e.g. onnxruntime-gpu) or pick one of those"
            )
        if self.precision not in PRECISIONS:
            raise PrunesearchError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise PrunesearchError(f"--threads must be at least 1, got {self.threads}")

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "runtime": "onnxruntime",
            "runtime_version": ort.__version__,
            "provider": self.provider,
            "precision": self.precision,
            "threads": self.intra_threads,
            "session": "intra-op threads as above, 1 inter-op thread, sequential execution, all graph optimisations",
        }


def machine_info() -> dict[str, Any]:
    """What a timing figure depends on: CPU, cores, library versions, and the load when measured."""
    import onnxruntime as ort

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
        "onnxruntime": ort.__version__,
        "loadavg_1m": round(load[0], 2),
    }


def machine_fingerprint() -> str:
    """A short hash of the hardware and runtime identity (not of the load), to tell machines apart."""
    import hashlib

    info = machine_info()
    ident = "|".join(str(info[k]) for k in ("cpu", "cores", "machine", "system", "onnxruntime"))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def export_graph(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    settings: RuntimeSettings,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Export at the settings' precision; returns the file and the feeds to run it with."""
    if settings.precision == "fp16":
        module = module.half()
        args = tuple(a.half() for a in args)
    path = export_module(module, args, path, input_names, output_names)
    return path, {name: a.numpy() for name, a in zip(input_names, args)}


def open_session(path: Path, settings: RuntimeSettings):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.intra_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers: list[Any] = [settings.provider]
    if settings.provider == "TensorrtExecutionProvider" and settings.precision == "fp16":
        providers = [(settings.provider, {"trt_fp16_enable": True})]
    return ort.InferenceSession(str(path), opts, providers=providers)


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
            raise PrunesearchError("timing needs at least one round of positive length")
        if self.clock not in CLOCKS:
            raise PrunesearchError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")

    def check(self, settings: RuntimeSettings) -> None:
        if self.clock == "cpu" and (settings.intra_threads != 1 or settings.provider != "CPUExecutionProvider"):
            raise PrunesearchError(
                "--clock cpu counts the CPU time of the calling thread, which is the whole run only "
                "with --threads 1 on CPUExecutionProvider"
            )


def time_graphs(
    graphs: dict[str, tuple[Any, dict[str, np.ndarray]]],
    plan: TimingPlan,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Timing]:
    """Time every ``name -> (session, feeds)`` in interleaved rounds; ``progress(round)`` after each."""
    clock = time.thread_time if plan.clock == "cpu" else time.perf_counter
    runs_per_round = {}
    for name, (session, feeds) in graphs.items():
        session.run(None, feeds)
        warm = []
        for _ in range(plan.warmup_runs):
            start = clock()
            session.run(None, feeds)
            warm.append((clock() - start) * 1000)
        typical_ms = float(np.median(warm)) if warm else plan.round_ms
        runs_per_round[name] = max(1, round(plan.round_ms / max(typical_ms, 1e-3)))
    timings = {name: Timing() for name in graphs}
    order = list(graphs)
    rng = random.Random(plan.seed)
    for r in range(plan.rounds):
        rng.shuffle(order)
        for name in order:
            session, feeds = graphs[name]
            samples = timings[name].samples
            for _ in range(runs_per_round[name]):
                start = clock()
                session.run(None, feeds)
                samples.append((clock() - start) * 1000)
        if progress:
            progress(r + 1)
    return timings
