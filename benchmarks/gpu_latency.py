"""Latency tables for this machine's GPU as deployments run it, checked against whole graphs.

The one script a GPU user runs (a few minutes on a datacenter GPU, longer on a Jetson): it profiles
the ViT-B preset with PyTorch CUDA graphs at fp16 and, where onnxruntime-gpu is installed, with
onnxruntime's CUDA provider (IOBinding) at fp16; each table is calibrated on whole graphs while it
is measured and then validated against 12 students plus the teacher timed whole. Tables are named
for the device (e.g. ``h200-torch-graph-fp16``) and copied with their validation reports into
``benchmarks/results/``.

    python benchmarks/gpu_latency.py                 # on the GPU machine, from the repository root
    python benchmarks/gpu_latency.py --preset small  # a quicker look

``--torch-device cpu`` runs the same script on a CPU (torch eager, onnxruntime CPU) to check it.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import torch

from prunesearch.latency.backends import OnnxRuntimeSettings, TorchSettings

from latency_report import RESULTS
from latency_validation import profile_and_validate


def device_slug(device: str) -> str:
    """``NVIDIA H200`` -> ``h200``; ``NVIDIA Jetson Orin NX`` -> ``jetson-orin-nx``."""
    name = re.sub(r"^(nvidia|geforce|tesla)\s+", "", device.strip(), flags=re.I)
    name = re.sub(r"^(geforce|tesla)\s+", "", name, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit-b")
    parser.add_argument("--torch-device", default="cuda", help="cuda (default), cuda:N, or cpu to try the script on a CPU")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    parser.add_argument("--profile-rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    gpu = args.torch_device.startswith("cuda")
    slug = device_slug(torch.cuda.get_device_name(0)) if gpu and torch.cuda.is_available() else "cpu"
    runs = [(f"{slug}-torch-{'graph' if gpu else 'eager'}-{args.precision}",
             TorchSettings("cuda-graph" if gpu else "eager", args.precision, args.torch_device))]
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if gpu else "CPUExecutionProvider"
    if provider in ort.get_available_providers():
        runs.append((f"{slug}-ort-cuda-{args.precision}" if gpu else f"{slug}-ort-{args.precision}", OnnxRuntimeSettings(provider, None, args.precision)))
    else:
        print(f"onnxruntime {ort.__version__} has no {provider} (install onnxruntime-gpu): onnxruntime not profiled")
    for name, runtime in runs:
        report = profile_and_validate(name, args.preset, runtime, args.profile_rounds, "wall", args.samples, args.rounds, seed=0)
        table = shutil.copy(Path("latency_models") / f"{name}.yaml", RESULTS / f"{name}.yaml")
        print(f"wrote {report} and {table}")


if __name__ == "__main__":
    main()
