"""Pairs per second of the training data pipeline alone (decode JPEG, crop, augment, normalise).

Run from the repository root:

    python -m benchmarks.pair_pipeline                       # 0 and 2 loader workers, ViT-B crops
    python -m benchmarks.pair_pipeline --workers 0 2 4 --batches 20

Frames are 1280x720 JPEGs in GOT-10k's layout (``tests.support.rehearsal.write_got10k_folder``),
pairs causal as on real data, crops 128/256 px (the ViT-B preset), batch 32, through the same
``pair_batches`` the fine-tune uses. The first batch (worker start-up) is timed apart. Writes
benchmarks/results/pair_pipeline.md. The frame cache is per process and the sequences are short,
so later batches hit decoded frames more often than a large dataset would: the rate with a cold
cache is the first-pass figure reported beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from prunesearch.data.got10k import read_got10k
from prunesearch.latency.runtime import machine_info
from prunesearch.models.vit_tracker import get_preset
from prunesearch.training.pairs import FrameCache, PairSampler, pair_batches
from tests.support.rehearsal import write_got10k_folder

RESULTS = Path(__file__).parent / "results" / "pair_pipeline.md"


def rate(sequences: list, workers: int, batches: int, batch_size: int, cache_frames: int) -> tuple[float, float]:
    """(seconds to the first batch, pairs/s over the remaining batches)."""
    cfg = get_preset("vit-b")
    sampler = PairSampler(sequences, cfg.template_size, cfg.search_size, seed=0, mode="causal",
                          cache=FrameCache(capacity=cache_frames))
    start = time.perf_counter()
    stream = pair_batches(sampler, batches + 1, batch_size, workers)
    next(stream)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in stream:
        pass
    return first, batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequences", type=int, default=6)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        write_got10k_folder(tmp, train=args.sequences, val=1, frames=args.frames)
        sequences = read_got10k(Path(tmp) / "train")
        rows = []
        for workers in args.workers:
            for label, cache in (("no frame cache", 1), ("frame cache", 4096)):
                first, pairs = rate(sequences, workers, args.batches, args.batch_size, cache)
                rows.append((workers, label, first, pairs))
                print(f"{workers} workers, {label}: first batch {first:.1f} s, then {pairs:.1f} pairs/s", flush=True)
    info = machine_info()
    cmd = " ".join(["python -m benchmarks.pair_pipeline", *sys.argv[1:]])
    lines = [
        "# Training pair pipeline: pairs per second on the CPU",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {info.get('cpu', '?')}, {os.cpu_count()} CPUs; load average before the run "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared with other jobs when above 0.5).",
        "",
        f"{args.sequences} sequences x {args.frames} frames of 1280x720 JPEG, causal pairs, 128/256 px crops, "
        f"batch {args.batch_size}, {args.batches} timed batches after the first.",
        "",
        "| loader workers | frames | first batch (s) | pairs/s |",
        "| ---: | --- | ---: | ---: |",
        *(f"| {w} | {label} | {first:.1f} | {pairs:.1f} |" for w, label, first, pairs in rows),
        "",
        "\"no frame cache\" decodes both frames of every pair (a large dataset); \"frame cache\" keeps decoded",
        "frames per process (small datasets, repeated frames). A fine-tune needs batch x steps / time pairs:",
        "B9-3 at the ViT-B preset takes 585 pairs/s of an H200 (model only, bf16, batch 32), so a GPU wants",
        "as many loader workers as it takes for the cold rate to reach that.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
