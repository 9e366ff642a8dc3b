"""Cross-check: our AO and SR0.5 against the official GOT-10k toolkit on the same result files.

Tracks a GOT-10k-layout val folder with a checkpoint and OpenCV MIL (``prunesearch.evaluation``,
results written in the GOT-10k layout), then scores the written files (boxes rounded to 3 decimals,
as the toolkit reads them) with ``prunesearch.evaluation.metrics`` and with the official toolkit's
``ExperimentGOT10k.report``, and compares overall and per-sequence AO and SR0.5.
The toolkit is not a dependency of prunesearch; install it beside it, e.g.

    python -m venv --system-site-packages /tmp/gotenv && /tmp/gotenv/bin/pip install got10k
    /tmp/gotenv/bin/python benchmarks/check_got10k_toolkit.py --data GOT10K_ROOT --checkpoint FILE

Writes benchmarks/results/check_got10k_toolkit.md and exits non-zero on any difference > 1e-6.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from prunesearch.checkpoints import load_checkpoint
from prunesearch.data import got10k
from prunesearch.evaluation import evaluate, evaluate_baseline
from prunesearch.evaluation.metrics import score_sequence, summarize

RESULTS = Path(__file__).parent / "results" / "check_got10k_toolkit.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="GOT-10k root holding val/list.txt")
    parser.add_argument("--checkpoint", type=Path, required=True, help="tracker checkpoint")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    from got10k.experiments import ExperimentGOT10k

    sequences = got10k.read_got10k(args.data, "val")
    trackers = ("ours", "opencv-mil")
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        evaluate(load_checkpoint(args.checkpoint), sequences, results / "GOT-10k" / "ours")
        evaluate_baseline("mil", sequences, results / "GOT-10k" / "opencv-mil")
        experiment = ExperimentGOT10k(str(args.data), subset="val", result_dir=str(results), report_dir=str(Path(tmp) / "reports"))
        official = experiment.report(list(trackers))
        for tracker in trackers:
            scores = []
            for seq in sequences:
                boxes = np.loadtxt(results / "GOT-10k" / tracker / seq.name / f"{seq.name}_001.txt", delimiter=",")
                bound = tuple(seq.attributes["resolution"])
                scores.append(score_sequence(boxes, seq.boxes, seq.visible, seq.dataset, bound))
            summary = summarize(scores)
            perf = official[tracker]
            pairs = [("overall", perf["overall"], summary.ao, summary.sr50)]
            pairs += [(q.name, perf["seq_wise"][q.name], s.ao, s.sr50) for q, s in zip(sequences, scores)]
            for label, theirs, ao, sr in pairs:
                worst = max(worst, abs(theirs["ao"] - ao), abs(theirs["sr"] - sr))
                rows.append(f"| {tracker} | {label} | {theirs['ao']:.6f} | {ao:.6f} | {theirs['sr']:.6f} | {sr:.6f} |")

    extra = sys.argv[1:] if argv is None else argv
    lines = [
        "# AO / SR0.5 against the official GOT-10k toolkit",
        "",
        f"Command: `{' '.join(['python benchmarks/check_got10k_toolkit.py', *extra])}`  ",
        f"Data: {len(sequences)} sequences of {args.data}/val, {sum(len(q) for q in sequences)} frames, "
        f"{sum(int((~q.visible).sum()) for q in sequences)} of them absent (cover 0). Largest difference: {worst:.2e}.",
        "",
        "| tracker | sequence | AO toolkit | AO ours | SR0.5 toolkit | SR0.5 ours |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
