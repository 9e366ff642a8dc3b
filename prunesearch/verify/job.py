"""What the device is asked to time: each model's two graphs and how to run them.

A :class:`Job` says which graphs (per model, the template graph and the per-frame graph that
:func:`prunesearch.export.export_tracker` writes) and the settings a latency table's meta records:
execution provider, intra-op threads, precision, clock. :meth:`Job.from_meta` takes those from the
table being verified, so the device runs the graphs the way the table was measured.

Precision fp16: TensorRT builds fp16 engines from fp32 graphs (``trt_fp16_enable``); the other
providers run the precision the graphs hold, so give them graphs exported in half precision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunesearch.errors import InputError
from prunesearch.export import FRAME_FILE, TEMPLATE_FILE
from prunesearch.fields import checked, rule_of, shown
from prunesearch.latency.backends import OnnxRuntimeSettings
from prunesearch.latency.runtime import CLOCKS
from prunesearch.verify.device_runner import CPU_PROVIDER, JOB_DEFAULTS

CUDA_PROVIDER = "CUDAExecutionProvider"
#: "random": a fresh search crop every frame (as a tracker sees); "fixed": the same crop each frame.
CROPS = ("random", "fixed")


@dataclass(frozen=True)
class ModelGraphs:
    """One model's exported pair: ``template`` (z -> z_feat) and ``frame`` (z_feat, x -> outputs)."""

    name: str
    template: Path
    frame: Path

    @classmethod
    def from_dir(cls, name: str, folder: str | Path) -> "ModelGraphs":
        """The pair in ``folder`` as ``prunesearch export`` writes it (template.onnx, frame.onnx)."""
        folder = Path(folder)
        return cls(name, folder / TEMPLATE_FILE, folder / FRAME_FILE)


@dataclass(frozen=True)
class Job:
    """Models to time and how; ``python`` and ``runner`` say what runs on the device.

    ``python`` is the device's python command, a shell fragment run there (``python3`` on a device,
    this interpreter locally, when None), e.g. ``/usr/bin/python3.10`` or ``env PATH=/opt/bin:$PATH python3``.
    ``runner`` replaces the runner script (default: :mod:`prunesearch.verify.device_runner`).
    ``engine_cache`` is a folder on the device for TensorRT engines to keep between jobs (default: a
    folder inside the job's temporary folder, so engines are rebuilt each time and nothing stays).
    """

    models: tuple[ModelGraphs, ...]
    runs: int = checked(JOB_DEFAULTS["runs"], minimum=1)
    warmup: int = checked(JOB_DEFAULTS["warmup"], minimum=0)
    template_runs: int = checked(JOB_DEFAULTS["template_runs"], minimum=1)
    provider: str = CPU_PROVIDER
    threads: int | None = checked(None, minimum=1, maximum=1024)
    precision: str = checked("fp32", choices=OnnxRuntimeSettings.precisions)
    crop: str = checked("random", choices=CROPS)
    clock: str = checked("wall", choices=CLOCKS)  # cpu: the calling thread's CPU time (1 thread, CPU provider)
    seed: int = checked(0, minimum=0)
    engine_cache: str | None = None
    python: str | None = None
    runner: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise InputError("nothing to time: a verification job needs at least one model's graphs")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise InputError(f"model names must be unique in a job, got {names}")
        for f in dataclasses.fields(self):
            rule, value = rule_of(f), getattr(self, f.name)
            if value is None:
                continue
            if rule.choices is not None and value not in rule.choices:
                raise InputError(f"verify {f.name} must be one of {', '.join(rule.choices)}, got {shown(value)}")
            if rule.choices is None and isinstance(value, int) and (isinstance(value, bool) or not rule.allows(value)):
                raise InputError(f"verify {f.name} must be a whole number{rule.describe()}, got {shown(value)}")
        if self.clock == "cpu" and (self.threads != 1 or self.provider != CPU_PROVIDER):
            raise InputError(f"verify clock cpu counts the calling thread's CPU time: only with 1 thread on {CPU_PROVIDER}")

    @classmethod
    def from_meta(cls, models: list[ModelGraphs], meta: dict[str, Any], **settings: Any) -> "Job":
        """A job that runs the graphs as the table with this ``meta`` was measured (provider, threads, precision, clock).

        An onnxruntime table names the provider; a table of another runtime (PyTorch) runs on
        onnxruntime's CUDA provider where it ran on CUDA, else on the CPU, and
        :func:`prunesearch.verify.facts.fact_warnings` says the runtimes differ.
        """
        provider = str(meta.get("provider") or "")
        if meta.get("runtime") != OnnxRuntimeSettings.name or not provider:
            provider = CUDA_PROVIDER if "cuda" in provider.lower() else CPU_PROVIDER
        threads = meta.get("threads")
        threads = threads if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1 else None
        cpu_clock = meta.get("clock") == "cpu" and threads == 1 and provider == CPU_PROVIDER
        return cls(
            tuple(models),
            provider=provider,
            threads=threads,
            clock="cpu" if cpu_clock else "wall",
            precision=meta["precision"] if meta.get("precision") in OnnxRuntimeSettings.precisions else "fp32",
            **settings,
        )

    def check_files(self) -> None:
        """Every graph and the runner exist here (one line naming the first missing one)."""
        for model in self.models:
            for path in (model.template, model.frame):
                if not Path(path).is_file():
                    raise InputError(f"{model.name}: graph {path} does not exist; write it with `prunesearch export`")
        if self.runner is not None and not Path(self.runner).is_file():
            raise InputError(f"runner script {self.runner} does not exist")

    def document(self, graph_paths: list[tuple[str, str]]) -> dict[str, Any]:
        """The runner's job file, with each model's (template, frame) paths as given (relative to the job file)."""
        return {
            "models": [{"name": m.name, "template": t, "frame": f} for m, (t, f) in zip(self.models, graph_paths)],
            **{k: getattr(self, k) for k in JOB_DEFAULTS},
        }

    def settings(self) -> dict[str, Any]:
        """The settings a result records with its figures."""
        return {k: getattr(self, k) for k in JOB_DEFAULTS}
