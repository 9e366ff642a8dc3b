"""A search on a shared machine: one candidate's fine-tune and evaluation, alone and beside one
CPU-bound process, for each way of running torch's intra-op threads.

    python -m benchmarks.shared_machine [--rounds 3] [--steps 40] [--out FILE]

Runs ``prunesearch run`` on a one-candidate experiment (B4-1/first of the default b4-b9 space,
``--budget 9.8ms`` on orin-nx, ``finetune.steps`` 40, built-in data, the shipped teacher), each
time in a fresh folder (a new store: nothing is reused from an earlier run), quiet and beside a
busy loop (a ``python -c 'while True: pass'`` subprocess), alternating configuration and condition
within each round so that the machine's drift falls on all of them alike. Configurations:

* 2 intra-op threads with OpenMP's default wait (threads spin before they sleep): the behaviour
  before ``OMP_WAIT_POLICY=PASSIVE`` became prunesearch's default (an empty ``OMP_WAIT_POLICY`` is
  OpenMP's default; libgomp says so on stderr);
* 1 intra-op thread (``OMP_NUM_THREADS=1``): other numbers than 2 threads in the last float digits;
* 2 intra-op threads, ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep at once (the default now).

Inter-op threads are not varied: an eager CPU fine-tune runs its graph on the calling thread.
Reports the wall time of the command and the fine-tune + evaluation seconds the run recorded
(parent run metrics), medians over the rounds, and the busy/quiet ratio per configuration; writes
benchmarks/results/shared_machine.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import command_env

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = """
architecture: vit-b
space: {file: litetrack, depth: {min: 4, max: 4}, rules: [first]}
teacher: {checkpoint: null}
data: {path: null, val_sequences: 8}
finetune: {steps: %d}
search: {trials: 1, seeds: [], early_stop: false, confirm: false}
seed: 0
"""
COMMAND = ["run", "--experiment", "one.yaml", "--target", "orin-nx", "--budget", "9.8ms"]
CONFIGS = {
    "2 threads, OpenMP default wait (before)": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": ""},
    "1 thread": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": ""},
    "2 threads, OMP_WAIT_POLICY=PASSIVE (default now)": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}
CONDITIONS = ("quiet", "beside a busy loop")


def one_run(env_extra: dict[str, str], steps: int, busy: bool) -> tuple[float, float]:
    """Wall seconds of the command, and the fine-tune + evaluation seconds it recorded."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="prunesearch-shared-") as tmp:
        folder = Path(tmp)
        (folder / "one.yaml").write_text(EXPERIMENT % steps)
        env = command_env(folder, **env_extra)
        loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "prunesearch", *COMMAND], cwd=folder, env=env,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - start
        finally:
            if loop is not None:
                loop.kill()
                loop.wait()
        if done.returncode != 0:
            sys.exit(f"the search failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("one").experiment_id], "tags.kind = 'search'")
        m = run.data.metrics
        return wall, m.get("seconds.finetune", 0.0) + m.get("seconds.evaluate", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shared_machine.md"))
    args = parser.parse_args()
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {(c, k): [] for c in CONFIGS for k in CONDITIONS}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, extra in CONFIGS.items():
            for condition in CONDITIONS if r % 2 == 0 else CONDITIONS[::-1]:
                wall, work = one_run(extra, args.steps, condition != "quiet")
                figures[(name, condition)].append((wall, work))
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1}: {name}, {condition}: {wall:.1f} s wall, {work:.1f} s fine-tune + evaluation", flush=True)
    from benchmarks.search_default_time import machine

    lines = [
        "# A search on a shared machine: intra-op threads and OpenMP's wait policy",
        "",
        f"`python -m benchmarks.shared_machine --rounds {args.rounds} --steps {args.steps}`: one candidate (B4-1/first), "
        f"{args.steps} fine-tune steps and its evaluation on 8 built-in sequences, through `prunesearch run`, each run "
        "in a fresh folder; quiet and beside one `while True: pass` process, alternating. Medians over the rounds; "
        "work = the fine-tune + evaluation seconds the run recorded, wall = the whole command (start-up, data, "
        "teacher, logging included).",
        "",
        f"Machine: {machine()}; 1-minute load average before and after each run: "
        f"{', '.join(f'{x:.1f}' for x in loads)} (other jobs shared the machine: 'quiet' means no busy loop of ours).",
        "",
        "| configuration | work quiet (s) | work beside busy (s) | ratio | wall quiet (s) | wall beside busy (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in CONFIGS:
        quiet, busy = figures[(name, CONDITIONS[0])], figures[(name, CONDITIONS[1])]
        wq, wb = statistics.median(x[1] for x in quiet), statistics.median(x[1] for x in busy)
        lines.append(f"| {name} | {wq:.1f} | {wb:.1f} | {wb / wq:.2f} | {statistics.median(x[0] for x in quiet):.1f} "
                     f"| {statistics.median(x[0] for x in busy):.1f} |")
    lines += ["", "Every run (work / wall seconds):", ""]
    for (name, condition), runs in figures.items():
        lines.append(f"- {name}, {condition}: " + ", ".join(f"{w:.1f} / {t:.1f}" for t, w in runs))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
