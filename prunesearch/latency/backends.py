"""What runs a graph for timing: onnxruntime or PyTorch, on the CPU or a GPU, as a deployment runs it; and their registry.

A timing runtime turns a module and example inputs into a prepared run (a no-argument callable)
and says which timer measures it. Each is set up so that a part pays what it pays inside a whole
model and nothing more:

* onnxruntime on a GPU (CUDA, TensorRT) binds inputs and outputs on the device (IOBinding), so a
  part pays no host<->device copy the whole graph would not; TensorRT keeps its engines in a cache
  folder, so a re-run does not rebuild them;
* PyTorch runs ``eager``, as ``cuda-graph`` (captured once, replayed: no per-kernel launch cost),
  or ``compile`` (``torch.compile``), at fp32, fp16 or bf16. On a GPU the host queues work and
  returns, so runs are timed with CUDA events (:class:`~prunesearch.latency.runtime.CudaEventTimer`).

:data:`RUNTIMES` maps each ``--runtime`` name (a measured table's ``meta.runtime``) to its class;
the profile command's flags, a table's validation and the benchmarks all read it. Adding a runtime
is a class with the :class:`TimingRuntime` methods (in its own module if it is large) and its line
in :data:`RUNTIMES`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from prunesearch.errors import DeviceError, InputError
from prunesearch.export import export_module, onnxruntime
from prunesearch.latency.runtime import CudaEventTimer, GraphRun, HostTimer, Timer
from prunesearch.paths import cache_dir

TORCH_MODES = ("eager", "cuda-graph", "compile")
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ENGINE_CACHE = "tensorrt-engines"  # the cache folder of built TensorRT engines (prunesearch.paths)
DEFAULT_RUNTIME = "onnxruntime"


class TimingRuntime(Protocol):
    """Prepares graphs for timing on one runtime, device and precision (the profiler's and validation's seam).

    The class side says how one is made: its ``--runtime`` name, the precisions it runs, its own
    command-line flags, and how it is rebuilt from the flags or from a measured table's meta.
    """

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Its own flags (``--runtime``, ``--threads`` and ``--precision`` are shared, added once)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TimingRuntime":
        """The runtime the parsed flags ask for."""

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "TimingRuntime":
        """The runtime a measured table's meta (as :meth:`describe` wrote it) describes."""

    @property
    def on_gpu(self) -> bool: ...

    def check(self, clock: str) -> None:
        """Raise a one-line error if this machine cannot run it (or time it with ``clock``)."""

    def describe(self) -> dict[str, Any]:
        """The table's meta fields saying how graphs ran (runtime, version, provider, precision...)."""

    def prepare(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]], path: Path) -> GraphRun:
        """A run of ``module(*args)``; ``names`` are input and output names, ``path`` where a file may go."""

    def timer(self, clock: str) -> Timer: ...


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    """onnxruntime: execution provider, intra-op threads (None: all cores), precision, TensorRT engine cache.

    fp16 exports the modules in half precision (inputs, weights and outputs fp16). The CPU provider
    runs such graphs too, inserting casts to fp32 around operators it has no fp16 kernel for; that
    is what a user of fp16 on that CPU gets, and it is measured as such.
    """

    name: ClassVar[str] = "onnxruntime"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    providers: ClassVar[tuple[str, ...]] = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")

    provider: str = "CPUExecutionProvider"
    threads: int | None = None
    precision: str = "fp32"
    engine_cache: Path | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--provider", default=cls.provider, choices=cls.providers,
                            help="onnxruntime execution provider (GPU providers bind inputs and outputs on the device)")
        parser.add_argument("--engine-cache", default=None,
                            help="TensorRT engine cache folder (default: ~/.cache/prunesearch/tensorrt-engines)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "OnnxRuntimeSettings":
        return cls(args.provider, args.threads, args.precision, Path(args.engine_cache) if args.engine_cache else None)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "OnnxRuntimeSettings":
        cache = meta.get("engine_cache")
        return cls(meta["provider"], meta.get("threads"), meta["precision"], Path(cache) if cache else None)

    @property
    def intra_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def on_gpu(self) -> bool:
        return self.provider != "CPUExecutionProvider"

    def check(self, clock: str) -> None:
        ort = onnxruntime()

        available = ort.get_available_providers()
        if self.provider not in available:
            raise DeviceError(
                f"execution provider {self.provider} is not available in this onnxruntime "
                f"{ort.__version__} build (available: {', '.join(available)}); run on a device whose "
                "onnxruntime has it (e.g. onnxruntime-gpu) or pick one of those"
            )
        if self.precision not in self.precisions:
            raise InputError(f"onnxruntime precision must be one of {', '.join(self.precisions)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if clock == "cpu" and (self.intra_threads != 1 or self.on_gpu):
            raise InputError(
                "--clock cpu counts the CPU time of the calling thread, which is the whole run only "
                "with --threads 1 on CPUExecutionProvider"
            )

    def describe(self) -> dict[str, Any]:
        ort = onnxruntime()

        out = {
            "runtime": self.name,
            "runtime_version": ort.__version__,
            "provider": self.provider,
            "precision": self.precision,
            "threads": self.intra_threads,
            "session": "intra-op threads as above, 1 inter-op thread, sequential execution, all graph optimisations"
            + f"; inputs and outputs bound on the {'GPU' if self.on_gpu else 'CPU'} (IOBinding)",
        }
        if self.provider == "TensorrtExecutionProvider":
            out["engine_cache"] = str(self.engine_cache or cache_dir(ENGINE_CACHE))
        return out

    def prepare(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]], path: Path) -> GraphRun:
        inputs, outputs = names
        if self.precision == "fp16":
            module, args = module.half(), tuple(a.half() for a in args)
        session = self.open(export_module(module, args, path, inputs, outputs))
        ort = onnxruntime()

        # Inputs and outputs bound where the provider computes (the CPU path runs the same code),
        # so on a GPU a part pays no host<->device copy the whole graph would not.
        device = "cuda" if self.on_gpu else "cpu"
        binding = session.io_binding()
        for name, a in zip(inputs, args):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(a.numpy(), device, 0))
        for name in outputs:
            binding.bind_output(name, device, 0)
        return BoundRun(session, binding)

    def open(self, path: Path):  # -> onnxruntime.InferenceSession
        ort = onnxruntime()

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers: list[Any] = [self.provider]
        if self.provider == "TensorrtExecutionProvider":
            cache = Path(self.engine_cache or cache_dir(ENGINE_CACHE))
            cache.mkdir(parents=True, exist_ok=True)
            trt = {"trt_fp16_enable": self.precision == "fp16", "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
            providers = [(self.provider, trt), "CUDAExecutionProvider", "CPUExecutionProvider"]
        return ort.InferenceSession(str(path), opts, providers=providers)

    def timer(self, clock: str) -> Timer:
        # session.run returns once the outputs are ready (on the device with IOBinding): the host clock is right.
        return HostTimer(clock)


class BoundRun:
    """One onnxruntime session run with its inputs and outputs bound; ``outputs()`` copies them to the host."""

    def __init__(self, session: Any, binding: Any) -> None:
        self.session, self.binding = session, binding

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def outputs(self) -> list[Any]:
        return self.binding.copy_outputs_to_cpu()


@dataclass(frozen=True)
class TorchSettings:
    """PyTorch: ``mode`` (eager, cuda-graph, compile), precision, ``device`` (cpu, cuda, cuda:N), CPU threads."""

    name: ClassVar[str] = "torch"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16")

    mode: str = "eager"
    precision: str = "fp32"
    device: str = "cpu"
    threads: int | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mode", default=cls.mode, choices=TORCH_MODES, help="torch: eager, cuda-graph (CUDA only) or compile")
        parser.add_argument("--torch-device", default=cls.device, help="torch: cpu, cuda or cuda:N")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TorchSettings":
        return cls(args.mode, args.precision, args.torch_device, args.threads)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "TorchSettings":
        return cls(meta.get("mode", "eager"), meta["precision"], meta.get("torch_device", "cpu"), meta.get("threads"))

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def check(self, clock: str) -> None:
        if self.mode not in TORCH_MODES:
            raise InputError(f"--mode must be one of {', '.join(TORCH_MODES)}, got {self.mode!r}")
        if self.precision not in self.precisions:
            raise InputError(f"torch precision must be one of {', '.join(self.precisions)}, got {self.precision!r}")
        if self.on_gpu and not torch.cuda.is_available():
            raise DeviceError(f"--torch-device {self.device}: this PyTorch {torch.__version__} sees no CUDA GPU; use --torch-device cpu")
        if not self.on_gpu and self.device != "cpu":
            raise InputError(f"--torch-device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.mode == "cuda-graph" and not self.on_gpu:
            raise InputError("--mode cuda-graph needs a CUDA device (--torch-device cuda); on a CPU use eager or compile")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if clock == "cpu" and (self.on_gpu or self.threads != 1):
            raise InputError("--clock cpu counts the calling thread's CPU time: only with --threads 1 on --torch-device cpu")

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "runtime_version": str(torch.__version__),
            "provider": f"{self.device} {self.mode}",
            "precision": self.precision,
            "mode": self.mode,
            "torch_device": self.device,
            "threads": None if self.on_gpu else (self.threads or torch.get_num_threads()),
            "session": "inference mode, batch 1" + ("; timed with CUDA events" if self.on_gpu else ""),
        }

    def prepare(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]], path: Path) -> GraphRun:
        if self.threads and not self.on_gpu:
            torch.set_num_threads(self.threads)
        dtype = TORCH_DTYPES[self.precision]
        module = module.eval().to(self.device, dtype)
        args = tuple(a.to(self.device, dtype) for a in args)
        if self.mode == "compile":
            module = torch.compile(module)
        if self.mode == "cuda-graph":
            return _capture(module, args)

        @torch.inference_mode()
        def run() -> object:
            return module(*args)

        if self.mode == "compile":
            try:
                run()  # compile now, so a failure is one line here rather than mid-timing
            except Exception as err:  # noqa: BLE001 - any compiler failure means: this mode does not work here
                raise DeviceError(f"--mode compile fails on this PyTorch {torch.__version__}: {type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''}; use eager or cuda-graph") from None
        return run

    def timer(self, clock: str) -> Timer:
        return CudaEventTimer() if self.on_gpu else HostTimer(clock)


def _capture(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> GraphRun:
    """Capture ``module(*args)`` as a CUDA graph (after warm-up on a side stream); the run replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(stream):
            for _ in range(3):
                module(*args)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(*args)
    return graph.replay


#: The timing runtimes by ``--runtime`` name; a new runtime is its class and one line here.
RUNTIMES: dict[str, type[TimingRuntime]] = {
    OnnxRuntimeSettings.name: OnnxRuntimeSettings,
    TorchSettings.name: TorchSettings,
}


def runtime_class(name: Any, where: str = "--runtime") -> type[TimingRuntime]:
    """The registered runtime called ``name``, or a one-line error (prefixed by ``where``) listing the registered ones."""
    if name not in RUNTIMES:
        raise InputError(f"{where}: unknown timing runtime {name!r}; registered runtimes: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_precisions() -> list[str]:
    """Every precision some registered runtime runs, in registration order (each runtime checks its own)."""
    return list(dict.fromkeys(p for cls in RUNTIMES.values() for p in cls.precisions))


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` with the registered names, each runtime's own flags, and the shared ``--threads`` and ``--precision``."""
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=list(RUNTIMES),
                        help=f"what runs the graphs (default: {DEFAULT_RUNTIME})")
    for cls in RUNTIMES.values():
        cls.add_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: all cores)")
    each = "; ".join(f"{name}: {', '.join(cls.precisions)}" for name, cls in RUNTIMES.items())
    parser.add_argument("--precision", default="fp32", choices=runtime_precisions(), help=f"precision ({each})")


def runtime_from_args(args: argparse.Namespace) -> TimingRuntime:
    """The runtime the flags of :func:`add_runtime_arguments` ask for."""
    return runtime_class(args.runtime).from_args(args)


def runtime_from_meta(meta: dict[str, Any], where: str = "meta.runtime") -> TimingRuntime:
    """The runtime a measured table's meta describes, so validation runs graphs as the profiler did."""
    return runtime_class(meta.get("runtime"), where).from_meta(meta)
