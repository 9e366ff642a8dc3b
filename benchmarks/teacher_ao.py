"""Accuracy of the shipped small teacher on the built-in val split, against OpenCV MIL and a
tracker that keeps the first box.

Run from the repository root (needs prunesearch.evaluation):

    python -m benchmarks.teacher_ao

Writes benchmarks/results/teacher_ao.md. The built-in val split is generated into the cache on
first use (seed 0, 25 sequences; never shared with the train split).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from prunesearch.checkpoints import load_checkpoint
from prunesearch.data.synthetic import builtin_sequences
from prunesearch.evaluation import evaluate, evaluate_baseline, score_sequence, summarize
from prunesearch.teacher import SHIPPED_TEACHER

RESULTS = Path(__file__).parent / "results" / "teacher_ao.md"


def first_box_summary(sequences) -> dict[str, float]:
    """Scores of a 'tracker' that never moves: the lower bound the data must keep low."""
    scores = []
    for seq in sequences:
        pred = np.repeat(seq.boxes[:1], len(seq), axis=0)
        bound = seq.attributes.get("resolution", seq.image(0).shape[1::-1])
        scores.append(score_sequence(pred, seq.boxes, seq.visible, seq.dataset, tuple(bound)))
    return vars(summarize(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHIPPED_TEACHER))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sequences = builtin_sequences("val")
    rows = []
    start = time.perf_counter()
    teacher = evaluate(load_checkpoint(args.teacher), sequences, name="small teacher")
    rows.append(("small teacher (shipped)", vars(teacher), time.perf_counter() - start))
    start = time.perf_counter()
    mil = evaluate_baseline("mil", sequences)
    rows.append(("OpenCV MIL", vars(mil), time.perf_counter() - start))
    rows.append(("first box kept", first_box_summary(sequences), 0.0))
    for name, s, sec in rows:
        print(f"{name}: AO {s['ao']:.3f}  SR50 {s['sr50']:.3f}  SR75 {s['sr75']:.3f}  ({sec:.0f}s)", flush=True)

    lines = [
        "# Small teacher on the built-in val split",
        "",
        f"Command: `{' '.join(['python -m benchmarks.teacher_ao', *sys.argv[1:]])}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s). "
        f"Data: built-in synthetic val split, {len(sequences)} sequences, {sum(len(s) for s in sequences)} frames.",
        "",
        "| tracker | AO | SR0.5 | SR0.75 | success AUC | precision |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {n} | {s['ao']:.3f} | {s['sr50']:.3f} | {s['sr75']:.3f} | {s['auc']:.3f} | {s['precision']:.3f} |"
        for n, s, _ in rows
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
