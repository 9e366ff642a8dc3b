"""A tabular benchmark: every distinct student of the whole LiteTrack space, fine-tuned and scored.

    OMP_NUM_THREADS=1 python -m benchmarks.space_table build [--work DIR] [--seeds 2] [--workers 2]   # resumable
    python -m benchmarks.space_table export [--work DIR]              # write the table as it stands

``build`` is itself a search: ``prunesearch run`` with strategy enumerate over the whole space
(spaces/litetrack.yaml on the shipped small teacher: depths 2..12, at most half the blocks
interacting, rules first, uniform and influence), no early stopping, no confirmation, 50 built-in
validation sequences, the default brief budget (200 steps), once per seed (``--seed 0``, ``--seed 1``,
...), budget after budget on orin-nx so that the table is complete for the small budgets first. Students that coincide under two rules are trained once (the search reuses them), candidates
are enumerated fastest first, and a run killed or stopped goes on where it was when ``build`` is run
again, because the study and the MLflow store in ``--work`` keep what was done.

``export`` reads the store and writes benchmarks/results/space_table.json: per distinct student
(kept teacher blocks, split), the rule names that yield it per seed (the influence rule measures
block influence on a batch drawn with the seed, so it may keep other blocks under another seed),
its cost, and per seed the accuracy, the per-sequence scores and the fine-tune's loss reports. The replay
(benchmarks/search_front_efficiency.py) searches against that file; latency is priced there, for
any target and budget, because it does not depend on training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, command_env

TABLE = REPO / "benchmarks" / "results" / "space_table.json"
DEFAULT_WORK = REPO / "benchmarks" / ".space_table"  # not committed: the study, the store and the checkpoints
EXPERIMENT_NAME = "whole-space"
TARGET = "orin-nx"
# Budgets done in turn (every seed of one before the next), so the table is complete for every
# setting up to the last budget finished while it grows; the last fits every student.
# On every shipped table, latency orders students by (depth, interaction layers); these budgets on
# orin-nx cut after depths 4, 6, 7, 8 and 10.
BUDGETS = ("10ms", "12.2ms", "13.3ms", "14.4ms", "16.7ms", "1000ms")
STEPS, VAL_SEQUENCES = 200, 50

EXPERIMENT = f"""\
# Written by benchmarks/space_table.py: the whole LiteTrack space, every student fine-tuned once per seed.
description: the whole LiteTrack space on the shipped small teacher (tabular benchmark)
architecture: vit-b
space:
  file: litetrack
teacher:
  checkpoint: null
data:
  path: null
  val_sequences: {VAL_SEQUENCES}
finetune:
  steps: {STEPS}
search:
  strategy: enumerate
  trials: 1000
  seeds: []
  early_stop: false
  confirm: false
seed: 0
"""


def command(work: Path, budget: str, seed: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "prunesearch", "run", "--experiment", str(work / f"{EXPERIMENT_NAME}.yaml"),
            "--target", TARGET, "--budget", budget, "--seed", str(seed), "--workers", str(workers)]


def build(work: Path, seeds: int, workers: int) -> None:
    """Fine-tune what is not yet in the store, budget after budget and seed after seed (a search
    reuses every fine-tune already in the store); exports the table after each."""
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{EXPERIMENT_NAME}.yaml").write_text(EXPERIMENT)
    (work / "threads").write_text(os.environ.get("OMP_NUM_THREADS", "torch's default"))
    for budget in BUDGETS:
        for seed in range(seeds):
            start = time.perf_counter()
            done = subprocess.run(command(work, budget, seed, workers), cwd=work, env=command_env(work))
            if done.returncode != 0:
                sys.exit(f"{budget}, seed {seed}: prunesearch run exited {done.returncode}; run `build` again to go on")
            print(f"{budget}, seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            export(work)


def export(work: Path) -> dict:
    """The table as the store holds it now (students still training are simply absent)."""
    from mlflow import MlflowClient

    from benchmarks.search_default_time import machine
    from prunesearch.search.mlflow_runs.read import read_results

    uri = command_env(work)["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri)
    students: dict[str, dict] = {}
    for stored in read_results(uri, EXPERIMENT_NAME):
        r = stored.result
        run = client.get_run(r.run_id)
        seed = run.data.params["seed"]
        student = students.setdefault(f"{' '.join(map(str, r.blocks))} | {r.ai_layers}", {
            "depth": r.depth, "ai_layers": r.ai_layers, "blocks": list(r.blocks), "names": {},
            "gmacs_per_frame": r.gmacs_per_frame, "params_m": r.params_m, "seeds": {},
        })
        # The influence rule's blocks depend on the seed (its calibration batch is drawn with it),
        # so which names a student goes by is kept per seed.
        names = student["names"].setdefault(seed, [])
        if r.key not in names:
            names.append(r.key)
        losses = client.get_metric_history(r.run_id, "finetune.loss")
        if not losses:  # a candidate that reused another's fine-tune: the student's own run has them
            continue
        student["seeds"][seed] = {
            "accuracy": r.accuracy,
            "sequences": r.sequences,
            "reports": sorted((m.step, m.value) for m in losses),
            "seconds": {k.split(".", 1)[1]: v for k, v in run.data.metrics.items() if k.startswith("seconds.")},
        }
    rows = sorted(students.values(), key=lambda x: (x["depth"], x["ai_layers"], x["blocks"]))
    for row in rows:
        row["names"] = {seed: sorted(names) for seed, names in sorted(row["names"].items())}
    table = {
        "what": "every distinct student of spaces/litetrack.yaml on the shipped small teacher, built-in data",
        "command": "python -m benchmarks.space_table build",
        "run": f"prunesearch run --experiment {EXPERIMENT_NAME}.yaml --target {TARGET} --budget B --seed S "
               f"for B in {', '.join(BUDGETS)} and S in 0..seeds-1",
        "experiment": EXPERIMENT,
        "machine": machine(),
        "threads": (work / "threads").read_text() if (work / "threads").exists() else "unknown",
        "finetune_steps": STEPS,
        "val_sequences": VAL_SEQUENCES,
        "seeds": sorted({s for row in rows for s in row["seeds"]}, key=int),
        "students": rows,
    }
    # One student per line: the file grows by lines as the table does, and diffs stay readable.
    head = json.dumps({k: v for k, v in table.items() if k != "students"}, indent=1)[:-2]
    students = ",\n".join(json.dumps(row, separators=(",", ":")) for row in rows)
    TABLE.write_text(f'{head},\n "students": [\n{students}\n ]\n}}\n')
    counts = [len(row["seeds"]) for row in rows]
    print(f"{TABLE.relative_to(REPO)}: {len(rows)} students, {sum(counts)} fine-tunes", flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "export"))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"the search's folder (default: {DEFAULT_WORK})")
    parser.add_argument("--seeds", type=int, default=2, help="fine-tunes per student, seeds 0..N-1")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each search (one thread each: "
                        "set OMP_NUM_THREADS=1)")
    args = parser.parse_args()
    if args.action == "build":
        build(args.work.resolve(), args.seeds, args.workers)
    else:
        export(args.work.resolve())


if __name__ == "__main__":
    main()
