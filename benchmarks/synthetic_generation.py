"""Seconds to write the built-in synthetic data, one thread against one per CPU, in one run.

Run from the repository root:

    python -m benchmarks.synthetic_generation                  # 60 train sequences, 3 rounds
    python -m benchmarks.synthetic_generation --sequences 300 --rounds 1   # the whole default split

The two settings alternate within each round, so a machine that gets busier part-way slows both;
the ratio of their medians is the figure. Every round also checks that both wrote the same files,
byte for byte. Writes benchmarks/results/synthetic_generation.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from prunesearch.data.synthetic import generate
from prunesearch.latency.runtime import machine_info

RESULTS = Path(__file__).parent / "results" / "synthetic_generation.md"


def files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    seconds: dict[int, list[float]] = {1: [], cpus: []}
    with tempfile.TemporaryDirectory(prefix="prunesearch-synth-") as tmp:
        for r in range(args.rounds):
            written = {}
            for threads in (1, cpus) if r % 2 == 0 else (cpus, 1):
                start = time.perf_counter()
                written[threads] = generate(Path(tmp) / f"{r}-{threads}", args.sequences, 0, "train", threads=threads)
                seconds[threads].append(time.perf_counter() - start)
            if files(written[1]) != files(written[cpus]):
                raise SystemExit(f"round {r}: one thread and {cpus} threads wrote different files")
    serial, threaded = statistics.median(seconds[1]), statistics.median(seconds[cpus])
    m = machine_info()
    lines = [
        "# Writing the built-in synthetic data: one thread against one per CPU",
        "",
        f"Command: `python -m benchmarks.synthetic_generation --sequences {args.sequences} --rounds {args.rounds}`",
        "",
        f"Machine: {m['cores']} logical CPUs ({m['cpu']}), load average {load_before:.2f} before the run.",
        "",
        f"{args.sequences} train sequences at the default size (192x144, 50-80 frames); settings alternate within a",
        "round; medians over rounds. Both settings wrote the same files, byte for byte, in every round.",
        "",
        "| threads | median s | rounds (s) |",
        "| ---: | ---: | --- |",
        *(f"| {n} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |" for n, v in seconds.items()),
        "",
        f"**Speed-up with {cpus} threads: {serial / threaded:.2f}x** (the default split of 300 train and 25 val",
        "sequences is written once per machine, then read from the cache).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
