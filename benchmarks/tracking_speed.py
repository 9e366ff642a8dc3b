"""Tracking speed of the evaluation loop: per-frame milliseconds of our trackers and OpenCV MIL.

For each tracker it runs the full loop of ``prunesearch.evaluation`` (crop, normalise, network,
Hann window, decode, map back, clip) over one generated sequence and reports the median time per
frame, and, for networks, the median time of the network call alone on the same crops, so the
loop's own overhead is their difference. Weights are random (speed does not depend on them).

    python benchmarks/tracking_speed.py            # small preset; writes benchmarks/results/tracking_speed.md
    python benchmarks/tracking_speed.py --presets small,vit-b --frames 30

ONNX rows need ``prunesearch.export.export_tracker`` (the model part); without it they are skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch

from prunesearch.data.processing import box_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.evaluation import NeuralTracker, OpenCVTracker, backend_for, run_sequence
from prunesearch.latency.runtime import machine_info
from prunesearch.models import build_teacher, get_preset
from prunesearch.pruning import student_from_teacher

RESULTS = Path(__file__).parent / "results" / "tracking_speed.md"


def make_sequence(folder: Path, frames: int, width: int = 640, height: int = 360) -> Sequence:
    """A textured 80x60 box drifting over noise, written as JPEGs (so image decoding is real)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(100, 255, size=(60, 80, 3), dtype=np.uint8)
    boxes, paths = [], []
    for i in range(frames):
        x, y = 100 + 4 * i % (width - 200), 80 + 2 * i % (height - 160)
        img = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
        img[y : y + 60, x : x + 80] = texture
        path = folder / f"{i + 1:08d}.jpg"
        cv2.imwrite(str(path), img)
        boxes.append([x, y, 80, 60])
        paths.append(path)
    return Sequence("bench", paths, np.array(boxes, float), np.ones(frames, bool), "synthetic")


def network_ms(backend, sequence: Sequence, repeats: int) -> float:
    """Median milliseconds of one ``frame`` call on a fixed search crop."""
    image = sequence.image(0)
    z = normalize(extract(image, box_window(sequence.boxes[0], 2.0, backend.template_size)))
    x = normalize(extract(image, box_window(sequence.boxes[0], 4.0, backend.search_size)))
    z_feat = backend.template(z)
    backend.frame(z_feat, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.frame(z_feat, x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def loop_ms(tracker, sequence: Sequence) -> float:
    """Median milliseconds per tracked frame (initialisation excluded)."""
    run_sequence(tracker, sequence)  # warm-up
    return 1000 * float(np.median(run_sequence(tracker, sequence).times[1:]))


def models(presets: list[str]):
    for preset in presets:
        torch.manual_seed(0)
        teacher = build_teacher(get_preset(preset)).eval()
        yield f"{preset} teacher", teacher
        yield f"{preset} B4-2", student_from_teacher(teacher, 4, 2).eval()


def machine() -> str:
    cpu = machine_info()["cpu"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} logical CPUs ({cpu}); load average {load:.2f} at start; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, opencv {cv2.__version__}, "
        f"python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small", help="comma list of presets (small, vit-b)")
    parser.add_argument("--frames", type=int, default=40, help="frames in the generated sequence")
    parser.add_argument("--repeats", type=int, default=30, help="network-only repetitions")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    try:
        from prunesearch.export import export_tracker
    except ImportError:
        export_tracker = None

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sequence = make_sequence(Path(tmp), args.frames)
        for label, model in models(args.presets.split(",")):
            runtimes = [("pytorch", model)]
            if export_tracker is not None:
                runtimes.append(("onnxruntime", export_tracker(model, Path(tmp) / label.replace(" ", "_"))))
            for runtime, source in runtimes:
                backend = backend_for(source, label)
                net = network_ms(backend, sequence, args.repeats)
                total = loop_ms(NeuralTracker(backend), sequence)
                rows.append((label, runtime, total, net))
                print(f"{label:>16} {runtime:>11}: {total:7.2f} ms/frame, network {net:7.2f} ms", file=sys.stderr)
        rows.append(("OpenCV MIL", "opencv", loop_ms(OpenCVTracker("mil"), sequence), float("nan")))

    extra = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/tracking_speed.py", *extra])
    lines = [
        "# Tracking speed (evaluation loop)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Sequence: {args.frames} generated 640x360 JPEG frames; median over frames 2..{args.frames}; "
        f"network alone: median of {args.repeats} calls on one crop. Random weights. "
        "The loop overhead (crop, normalise, window, decode, clip) is the difference of the two medians, "
        "so it is only meaningful on a quiet machine.",
        "",
        "| tracker | runtime | ms / frame (loop) | ms / frame (network only) | loop overhead ms | fps |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, runtime, total, net in rows:
        overhead = "" if np.isnan(net) else f"{total - net:.2f}"
        net_text = "" if np.isnan(net) else f"{net:.2f}"
        lines.append(f"| {label} | {runtime} | {total:.2f} | {net_text} | {overhead} | {1000 / total:.1f} |")
    if export_tracker is None:
        lines += ["", "ONNX rows skipped: this checkout has no `prunesearch.export.export_tracker`."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
