"""Wall time of the README's main command, and how it splits between the parts of a search.

    python -m benchmarks.search_default_time            # cold: built-in data generated afresh
    python -m benchmarks.search_default_time --warm     # reuse the built-in data cache
    python -m benchmarks.search_default_time --experiment quickstart --out /tmp/q.md   # a quick check

Runs ``prunesearch run --target orin-nx --budget 10ms`` (the default experiment, b4-b9) in a fresh
working folder (new MLflow store, new study), times the whole command, reads the split its parent
MLflow run recorded, and writes benchmarks/results/search_default_time.md. "Tool overhead" is
everything that is not data generation, teacher loading, fine-tuning, evaluation, checkpoints or
ONNX export: pricing, study bookkeeping, MLflow logging, imports and start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["prunesearch", "run", "--target", "orin-nx", "--budget", "10ms"]
DEFAULT_EXPERIMENT = "b4-b9"
WORK = ("data", "teacher", "finetune", "evaluate", "checkpoint", "export")
OVERHEAD = ("setup", "pricing", "study", "log_search", "log_candidate")


def machine() -> str:
    from prunesearch.latency.runtime import machine_info

    m = machine_info()
    return (
        f"{m['cores']} logical CPUs ({m['cpu']}), {m['system']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"load average {m['loadavg_1m']} when it finished"
    )


def parent_metrics(folder: Path, experiment: str) -> tuple[dict[str, float], dict[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], "tags.kind = 'search'")
    return run.data.metrics, run.data.tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the built-in data cache (default: generate afresh)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="another experiment, for a quick check")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_default_time.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prunesearch-bench-") as tmp:
        folder = Path(tmp)
        # The command runs this repository's code, whatever else is installed.
        path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", PYTHONPATH=path)
        if not args.warm:
            env["PRUNESEARCH_CACHE"] = str(folder / "cache")
        shown = COMMAND + ([] if args.experiment == DEFAULT_EXPERIMENT else ["--experiment", args.experiment])
        command = [sys.executable, "-m", "prunesearch", *shown[1:]]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"the command failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        metrics, tags = parent_metrics(folder, args.experiment)
    seconds = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("seconds.")}
    work = sum(seconds.get(k, 0.0) for k in WORK)
    startup = wall - seconds["total"]
    overhead = wall - work
    rows = [(k, seconds.get(k, 0.0)) for k in (*WORK, *OVERHEAD)] + [("start-up and imports (before timing)", startup)]
    counts = {k: int(v) for k, v in metrics.items() if k.startswith("trials.")}
    lines = [
        "# Wall time of the default command",
        "",
        f"Command: `{' '.join(shown)}` in a fresh folder ({'warm' if args.warm else 'cold'} built-in data cache),",
        f"measured by `python -m benchmarks.search_default_time{' --warm' if args.warm else ''}"
        f"{'' if args.experiment == DEFAULT_EXPERIMENT else ' --experiment ' + args.experiment}`.",
        "",
        f"Machine: {machine()}.",
        f"Strategy: {tags.get('strategy')}; outcomes: {counts}; accuracy scale: {tags.get('accuracy_scale')}.",
        "",
        f"**Wall time: {wall:.0f} s** (limit 600 s). Tool overhead (pricing, study, logging, start-up): "
        f"{overhead:.1f} s = {100 * overhead / wall:.1f} %, of which {startup:.1f} s is Python start-up and imports.",
        "",
        "| part | seconds | share |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {value:.1f} | {100 * value / wall:.1f} % |" for name, value in rows),
    ]
    if load_before > 0.5:
        lines += ["", f"Load average {load_before:.2f} before the run: another job shared the machine; re-run on a quiet one."]
    report = done.stdout[done.stdout.find("experiment "):].rstrip()  # what the command printed after its progress
    lines += ["", "What the command printed at the end:", "", "```", report, "```"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
