"""Wall time of the search's brief fine-tune of small-preset students, on this machine.

Run from the repository root:

    python -m benchmarks.finetune_time                # default budget, B4-2 and B8-3, 2 threads
    python -m benchmarks.finetune_time --threads 1 --students 4-2

Each student is pruned from the shipped small teacher (first-N rule) and fine-tuned with
``FinetuneConfig()`` (the search's default budget) with distillation from the teacher, on the
built-in synthetic train split. Writes benchmarks/results/finetune_time.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from prunesearch.checkpoints import load_checkpoint
from prunesearch.data.synthetic import builtin_sequences
from prunesearch.latency.runtime import machine_info
from prunesearch.models.vit_tracker import StudentSpec
from prunesearch.pruning import prune
from prunesearch.teacher import SHIPPED_TEACHER
from prunesearch.training import FinetuneConfig, finetune

RESULTS = Path(__file__).parent / "results" / "finetune_time.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="+", default=["4-2", "8-3"], help="N-M pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="override the default step budget")
    parser.add_argument("--teacher", default=str(SHIPPED_TEACHER))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    teacher = load_checkpoint(args.teacher).eval()
    sequences = builtin_sequences("train")
    cfg = FinetuneConfig(threads=args.threads)
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    rows = []
    for pair in args.students:
        depth, ai = (int(v) for v in pair.split("-"))
        student = prune(teacher, StudentSpec(depth, ai))
        start = time.perf_counter()
        result = finetune(student, sequences, cfg, teacher=teacher)
        wall = time.perf_counter() - start
        first, last = result.losses[0], result.losses[-1]
        rows.append((student.spec.name, result.steps, wall, wall / result.steps, first["loss"], last["loss"], last["iou"]))
        print(f"{student.spec.name}: {result.status} {result.steps} steps in {wall:.1f}s "
              f"({wall / result.steps * 1000:.0f} ms/step), loss {first['loss']:.3f} -> {last['loss']:.3f}", flush=True)

    cmd = " ".join(["python -m benchmarks.finetune_time", *sys.argv[1:]])
    lines = [
        "# Brief fine-tune time of small-preset students",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {os.cpu_count()} CPUs ({machine_info()['cpu']}), torch {torch.__version__}, {args.threads} torch threads; "
        f"budget {cfg.steps} steps x batch {cfg.batch_size}, distillation from the teacher on.",
        "",
        "| student | steps | wall s | ms/step | loss first log | loss last log | batch IoU last log |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {s} | {w:.1f} | {ms * 1000:.0f} | {a:.3f} | {b:.3f} | {i:.3f} |" for n, s, w, ms, a, b, i in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
