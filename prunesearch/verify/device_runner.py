"""Times a tracker's two ONNX graphs on the device they are meant for; copied there and run alone.

This one file is everything the device runs: it needs python3 (>= 3.8), numpy and onnxruntime
(what a Jetson user has) and imports nothing from prunesearch, so no install is needed there.
``python3 device_runner.py job.json`` reads the job (see :func:`main`), times every model as the
tracker runs it and prints ONE JSON document on stdout, ``{"runner": 1, ...}``; anything else a
library writes on the C level goes to stderr. A failure is JSON too: ``{"runner": 1, "error": ...,
"kind": ...}``, so the caller can tell "onnxruntime is missing" from a cut connection or garbage.

As the tracker runs: the template graph runs once per template (its cached features ``z_feat``
stay where the provider computes), then every frame runs the per-frame graph on those features
and a fresh search crop from the host, and copies the outputs back to the host (the tracker needs
the box). A frame's time is exactly that: crop upload, graph run, outputs download; making the
random crop is not timed. The template step is timed on its own (``template_runs`` runs).
With ``"clock": "cpu"`` (one thread, CPU provider) a run counts the calling thread's CPU time, as
a table profiled with ``--clock cpu`` does: what an idle device sees, even on a busy one.

The parsers of the device facts (``nvpmodel -q``, ``jetson_clocks --show``) live here, and the
caller imports them, so a table's recorded power mode is read by the same code as the device's.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

RUNNER_VERSION = 1
MIN_PYTHON = (3, 8)
CPU_PROVIDER = "CPUExecutionProvider"
TRT_PROVIDER = "TensorrtExecutionProvider"
CUDA_PROVIDERS = ("CUDAExecutionProvider", TRT_PROVIDER)
FRAME_OUTPUTS = ("score_map", "size_map", "offset_map", "box")
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
TEGRA_RELEASE = "/etc/nv_tegra_release"


class JobError(Exception):
    """A failure the runner reports as JSON: ``kind`` says which (the caller words the fix)."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind, self.extra = kind, extra


# ---------------------------------------------------------------- device facts


def _query(command: List[str]) -> Optional[str]:
    """A tool's stdout, or None where it is not installed, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20,
                              check=True, universal_newlines=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            text = f.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


def parse_nvpmodel(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """``nvpmodel -q`` (or the same text on one line) -> ``{"mode": "MAXN", "id": 0}``; None without a mode.

    The tool prints ``NV Power Mode: <NAME>`` and the mode's number on the next line (with an
    ``NV Fan Mode`` line or ``NVPM WARN`` lines around it on some releases).
    """
    found = re.search(r"NV Power Mode:\s*(\S+)(?:\s+(\d+))?", text or "")
    if not found:
        return None
    return {"mode": found.group(1), "id": int(found.group(2)) if found.group(2) else None}


def parse_jetson_clocks(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """``jetson_clocks --show`` -> whether CPU and GPU clocks are locked at their maximum.

    ``jetson_clocks`` locks a clock by setting its minimum frequency to its maximum, so each online
    ``cpuN: ... MinFreq=a MaxFreq=b`` line and the ``GPU MinFreq=a MaxFreq=b`` line have a == b
    once it ran. Returns ``{"locked": bool, "cpus": n, "unlocked": [names], "gpu_mhz": .., "gpu_max_mhz": ..}``.
    """
    clocks = {}
    for line in (text or "").splitlines():
        name = re.match(r"\s*(cpu\d+|GPU|EMC)\b", line)
        low, high = re.search(r"MinFreq=(\d+)", line), re.search(r"MaxFreq=(\d+)", line)
        if name and low and high and "Online=0" not in line:
            current = re.search(r"CurrentFreq=(\d+)", line)
            clocks[name.group(1)] = (int(low.group(1)), int(high.group(1)), int(current.group(1)) if current else None)
    cpus = [k for k in clocks if k.startswith("cpu")]
    if not cpus and "GPU" not in clocks:
        return None
    unlocked = [k for k in cpus + ["GPU"] if k in clocks and clocks[k][0] != clocks[k][1]]
    out = {"locked": not unlocked, "cpus": len(cpus), "unlocked": unlocked}  # type: Dict[str, Any]
    if "GPU" in clocks:
        low, high, current = clocks["GPU"]
        out["gpu_max_mhz"] = round(high / 1e6, 1)
        out["gpu_mhz"] = round(current / 1e6, 1) if current is not None else None
    return out


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.split(":", 1)[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    lscpu = _query(["lscpu"]) or ""
    found = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    return found.group(1).strip() if found else (platform.processor() or platform.machine())


def device_facts(ort: Any) -> Dict[str, Any]:
    """What a latency on this device depends on, read where the tools and files exist."""
    gpu = None
    smi = _query(["nvidia-smi", "-i", "0", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if smi:
        parts = [p.strip() for p in smi.splitlines()[0].split(",")]
        gpu = {"name": parts[0], "driver": parts[1] if len(parts) > 1 else None}
    board = _read(DEVICE_TREE_MODEL)
    power = parse_nvpmodel(_query(["nvpmodel", "-q"]))
    clocks_text = _query(["jetson_clocks", "--show"])
    release = _read(TEGRA_RELEASE)
    jetson = None
    if power or clocks_text or release or (board and "jetson" in board.lower()):
        jetson = {
            "model": board,
            "l4t": release.splitlines()[0].strip() if release else None,
            "power_mode": power["mode"] if power else None,
            "power_mode_id": power["id"] if power else None,
            # jetson_clocks --show needs root on most releases: None then means "not known".
            "clocks": parse_jetson_clocks(clocks_text),
        }
    cpu = _cpu_model()
    try:
        import tensorrt  # noqa: F401 - only its version is wanted

        trt_version = str(getattr(tensorrt, "__version__", "unknown"))
    except Exception:  # noqa: BLE001 - a broken TensorRT install is "not usable" as much as a missing one
        trt_version = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),)
    return {
        "name": (board if jetson and board else None) or (gpu["name"] if gpu else None) or cpu,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": "{} {}".format(platform.system(), platform.release()),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "gpu": gpu,
        "jetson": jetson,
        "governor": _read(GOVERNOR),
        "loadavg_1m": round(load[0], 2),
        "onnxruntime": ort.__version__,
        "providers_available": list(ort.get_available_providers()),
        "tensorrt": trt_version,
    }


# ---------------------------------------------------------------- timing


def _numpy_dtype(np: Any, onnx_type: str) -> Any:
    return np.float16 if onnx_type == "tensor(float16)" else np.float32


def _session(ort: Any, path: str, job: Dict[str, Any], workdir: str) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = job["threads"] or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    provider = job["provider"]
    providers = [provider]  # type: List[Any]
    if provider == TRT_PROVIDER:
        cache = job.get("engine_cache") or os.path.join(workdir, "engines")
        os.makedirs(cache, exist_ok=True)
        trt = {"trt_fp16_enable": job["precision"] == "fp16", "trt_engine_cache_enable": True, "trt_engine_cache_path": cache}
        providers = [(provider, trt), "CUDAExecutionProvider", CPU_PROVIDER]
    elif provider != CPU_PROVIDER:
        providers = [provider, CPU_PROVIDER]
    try:
        return ort.InferenceSession(path, opts, providers=providers)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for unreadable graphs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError("graph", "onnxruntime cannot open {}: {}".format(os.path.basename(path), first))


def _ran_with(session: Any, job: Dict[str, Any], dtype: Any, np: Any) -> Dict[str, Any]:
    """The provider that actually ran (onnxruntime falls back silently) and the precision that did."""
    ran = session.get_providers()
    options = session.get_provider_options() if hasattr(session, "get_provider_options") else {}
    out = {"provider": ran[0], "providers": list(ran), "graph_precision": "fp16" if dtype == np.float16 else "fp32"}
    precision = out["graph_precision"]
    if ran[0] == TRT_PROVIDER:
        trt = options.get(TRT_PROVIDER, {})
        out["provider_options"] = {k: v for k, v in trt.items() if k.startswith("trt_fp16") or k.startswith("trt_int8")}
        honoured = str(trt.get("trt_fp16_enable", "0")) in ("1", "True", "true")
        out["fp16_honoured"] = honoured if job["precision"] == "fp16" else None
        if honoured:
            precision = "fp16"
    out["precision"] = precision
    return out


def _stats(np: Any, samples: List[float]) -> Dict[str, Any]:
    a = np.asarray(samples)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "runs": int(a.size)}


def time_model(ort: Any, np: Any, model: Dict[str, Any], job: Dict[str, Any], workdir: str) -> Dict[str, Any]:
    """One model as the tracker runs it: the template step, then ``runs`` frames on its cached features."""
    template = _session(ort, model["template"], job, workdir)
    frame = _session(ort, model["frame"], job, workdir)
    # The cached features stay on the GPU with the CUDA and TensorRT providers (host memory otherwise).
    device = "cuda" if template.get_providers()[0] in CUDA_PROVIDERS else "cpu"
    rng = np.random.default_rng(job["seed"])
    clock = time.thread_time if job["clock"] == "cpu" else time.perf_counter

    z_in = template.get_inputs()[0]
    z = rng.standard_normal(z_in.shape).astype(_numpy_dtype(np, z_in.type))
    t_binding = template.io_binding()
    t_binding.bind_cpu_input(z_in.name, z)
    t_binding.bind_output(template.get_outputs()[0].name, device)
    template_samples = []
    for i in range(job["warmup"] + job["template_runs"]):
        start = clock()
        template.run_with_iobinding(t_binding)
        if i >= job["warmup"]:
            template_samples.append((clock() - start) * 1000)
    z_feat = t_binding.get_outputs()[0]  # the cached features, where the provider computed them

    inputs = {i.name: i for i in frame.get_inputs()}
    if set(inputs) != {"z_feat", "x"}:
        raise JobError("graph", "{} has inputs {}; a tracker's per-frame graph takes z_feat and x".format(
            os.path.basename(model["frame"]), sorted(inputs)))
    x_in = inputs["x"]
    x_dtype = _numpy_dtype(np, x_in.type)
    binding = frame.io_binding()
    binding.bind_ortvalue_input("z_feat", z_feat)
    for output in frame.get_outputs():
        binding.bind_output(output.name, "cpu")  # the tracker reads the box on the host
    fixed = rng.standard_normal(x_in.shape).astype(x_dtype)
    samples = []
    for i in range(job["warmup"] + job["runs"]):
        x = fixed if job["crop"] == "fixed" else rng.standard_normal(x_in.shape).astype(x_dtype)
        start = clock()
        binding.bind_cpu_input("x", x)
        frame.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()
        if i >= job["warmup"]:
            samples.append((clock() - start) * 1000)
    meta = frame.get_modelmeta().custom_metadata_map
    return {
        "name": model["name"],
        "template_ms": float(np.median(template_samples)),
        "template_runs": len(template_samples),
        **_stats(np, samples),
        "graph_model": meta.get("prunesearch.model"),
        "session": _ran_with(frame, job, x_dtype, np),
    }


# ---------------------------------------------------------------- job


JOB_DEFAULTS = {"runs": 200, "warmup": 20, "template_runs": 10, "provider": CPU_PROVIDER, "threads": None,
                "precision": "fp32", "crop": "random", "clock": "wall", "seed": 0, "engine_cache": None}


def read_job(path: str) -> Dict[str, Any]:
    """The job file: ``models`` ([{name, template, frame}], paths relative to the job file) and settings."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as err:
        raise JobError("job", "cannot read the job {}: {}".format(path, err))
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list) or not raw["models"]:
        raise JobError("job", "the job {} needs a non-empty 'models' list".format(path))
    job = dict(JOB_DEFAULTS)
    job.update({k: v for k, v in raw.items() if k in JOB_DEFAULTS})
    here = os.path.dirname(os.path.abspath(path))
    job["models"] = []
    for m in raw["models"]:
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("name", "template", "frame")):
            raise JobError("job", "each model of the job needs name, template and frame")
        job["models"].append({"name": m["name"], **{k: os.path.join(here, m[k]) for k in ("template", "frame")}})
    for key in ("runs", "template_runs"):
        if not isinstance(job[key], int) or job[key] < 1:
            raise JobError("job", "{} must be a whole number >= 1, got {!r}".format(key, job[key]))
    if not isinstance(job["warmup"], int) or job["warmup"] < 0:
        raise JobError("job", "warmup must be a whole number >= 0, got {!r}".format(job["warmup"]))
    if job["clock"] == "cpu" and (job["threads"] != 1 or job["provider"] != CPU_PROVIDER):
        raise JobError("job", "clock cpu counts the calling thread's CPU time: only with 1 thread on {}".format(CPU_PROVIDER))
    return job


def run(job_path: str) -> Dict[str, Any]:
    job = read_job(job_path)
    for module in ("numpy", "onnxruntime"):
        try:
            __import__(module)
        except ImportError as err:
            raise JobError("module", "{}: {}".format(module, str(err).strip().splitlines()[0] if str(err).strip() else
                                                     type(err).__name__), module=module, python=sys.executable)
    import numpy as np
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if job["provider"] not in available:
        raise JobError("provider", "execution provider {} is not available in onnxruntime {} (available: {})".format(
            job["provider"], ort.__version__, ", ".join(available)), available=available)
    facts = device_facts(ort)
    workdir = os.path.dirname(os.path.abspath(job_path))
    models = [time_model(ort, np, m, job, workdir) for m in job["models"]]
    settings = {k: job[k] for k in JOB_DEFAULTS}
    settings["threads_used"] = job["threads"] or os.cpu_count() or 1
    return {"runner": RUNNER_VERSION, "device": facts, "settings": settings, "models": models,
            "loadavg_1m_after": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def main(argv: List[str]) -> int:
    """``python3 device_runner.py JOB.json``: prints the report (or the error) as one JSON document."""
    # Keep stdout for the one document: whatever a library prints (C level included) goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        if sys.version_info < MIN_PYTHON:
            raise JobError("python", "python {} is too old".format(platform.python_version()), python=platform.python_version())
        if len(argv) != 2:
            raise JobError("job", "usage: python3 device_runner.py JOB.json")
        doc = run(argv[1])
    except JobError as err:
        doc = {"runner": RUNNER_VERSION, "error": str(err), "kind": err.kind, **err.extra}
    except Exception as err:  # noqa: BLE001 - any other failure is reported, not a traceback on stdout
        doc = {"runner": RUNNER_VERSION, "error": "{}: {}".format(type(err).__name__, err), "kind": "crash"}
    out.write(json.dumps(doc) + "\n")
    out.flush()
    return 1 if "error" in doc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
