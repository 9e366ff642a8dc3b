"""How many fine-tunes the controller needs to find the whole front, against enumerating them all.

    python -m benchmarks.search_front_efficiency [--teacher FILE] [--seeds 10] [--record FILE | --replay FILE]

1. Fine-tunes and scores every candidate of benchmarks/search_small_space.yaml with the real
   pipeline (``prunesearch run``, strategy enumerate, no early stopping) in a fresh folder: this
   gives the true front on orin-nx.
2. Replays those recorded results (AO and the loss reports of each fine-tune) to the controller:
   for each sampler and seed a fresh study samples until every candidate is settled, with and
   without early stopping, and we note after how many fine-tunes the trained candidates first hold
   the whole true front, and how many fine-tune steps had been spent by then. Early stopping is
   replayed off, with the default setting, and with variants of it. Replaying is
   faithful because every fine-tune uses the experiment's seed: training a candidate again gives
   the recorded result.
``--record FILE`` keeps step 1's results in a JSON file; ``--replay FILE`` skips step 1 and uses them.
Writes benchmarks/results/search_front_efficiency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "benchmarks" / "search_small_space.yaml"
TARGET, BUDGET = "orin-nx", "100ms"
SAMPLERS = ("tpe", "nsga2", "random")


def early_stop_variants() -> dict[str, object]:
    """Off, the product default, and the variants it was chosen against."""
    from prunesearch.search.experiment import EarlyStop

    default = EarlyStop()
    return {
        "off": None,
        f"default (margin {default.margin})": default,
        "margin 0": EarlyStop(margin=0.0),
        "margin 0.02": EarlyStop(margin=0.02),
        "margin 0.1": EarlyStop(margin=0.1),
        "last rung only": EarlyStop(rungs=1),
    }


@dataclass
class Recorded:
    accuracy: dict[str, float]
    reports: list[tuple[int, float]]  # (steps done, mean loss since the previous report)
    blocks: tuple[int, ...]  # the teacher blocks the candidate kept (its student, with its split)


class ReplayTrainer:
    """The controller's Trainer, answering with recorded real fine-tunes instead of training again."""

    def __init__(self, recorded: dict[str, Recorded], steps: int) -> None:
        self.recorded, self.steps = recorded, steps
        self.order: list[tuple[str, int, bool]] = []  # candidate, steps spent, trained to the end

    def blocks(self, cand):  # noqa: ANN001, ANN201 - the Trainer protocol
        return self.recorded[cand.key].blocks

    def run(self, cand, on_step):  # noqa: ANN001, ANN201 - the Trainer protocol
        from prunesearch.search.controller import TrainResult

        rec = self.recorded[cand.key]
        for step, loss in rec.reports:
            if on_step(step, {"loss": loss}) and step < self.steps:
                self.order.append((cand.key, step, False))
                return TrainResult("stopped")
        self.order.append((cand.key, self.steps, True))
        return TrainResult("ok", accuracy=dict(rec.accuracy))


def enumerate_all(folder: Path, teacher: str | None):  # noqa: ANN201
    """Run the real search over the whole space; read every candidate and its loss reports back from MLflow."""
    from mlflow import MlflowClient

    from prunesearch.search.mlflow_runs.read import comparable, read_results

    command = [sys.executable, "-m", "prunesearch", "run", "--experiment", str(EXPERIMENT), "--target", TARGET, "--budget", BUDGET]
    if teacher:
        command += ["--teacher", teacher]
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # this repository's code
    start = time.perf_counter()
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONPATH=path)
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"enumeration failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    results = comparable(read_results(uri, EXPERIMENT.stem), TARGET, allow_mixed=False)
    client = MlflowClient(tracking_uri=uri)
    recorded = {
        r.key: Recorded(dict(r.accuracy), sorted((m.step, m.value) for m in client.get_metric_history(r.run_id, "finetune.loss")),
                        tuple(r.blocks))
        for r in results
    }
    steps = int(client.get_run(results[0].run_id).data.params["finetune.steps"])
    return recorded, results, steps, wall


def replay(recorded: dict[str, Recorded], steps: int, book, space, sampler: str, seed: int, early, folder: Path):  # noqa: ANN001, ANN201
    from prunesearch.data.processing import CropGeometry
    from prunesearch.search.controller import NoSink, SearchController, SilentProgress, plan_search, training_keys
    from prunesearch.search.experiment import DataSpec, SearchSettings
    from prunesearch.search.identity import TrainingIdentity
    from prunesearch.search.samplers import make_sampler
    from prunesearch.search.study.storage import open_study
    from prunesearch.training.finetune import FinetuneConfig

    settings = SearchSettings(
        trials=len(recorded), strategy="sample", sampler=sampler, seeds=(), early_stop=early
    )
    handle, db = tempfile.mkstemp(prefix=f"replay-{sampler}-{seed}-", suffix=".db", dir=folder)
    os.close(handle)
    storage = f"sqlite:///{db}"
    study = open_study(storage, "replay", make_sampler(sampler, seed, len(recorded) // 2))
    trainer = ReplayTrainer(recorded, steps)
    replayed = TrainingIdentity("replay", "replay", DataSpec(), FinetuneConfig(), CropGeometry(), real_data=False)
    plan = plan_search(study, book, settings, training_keys(trainer, replayed, book.candidates))
    SearchController(study, book, space, 12, settings, plan, trainer, NoSink(), SilentProgress(), replayed).work()  # not logged
    return trainer.order


def found_after(order: list[tuple[str, int, bool]], front: set[str]) -> tuple[int | None, int]:
    """Fine-tunes (and steps) until every front member has been trained to the end; None if never."""
    trained: set[str] = set()
    spent = 0
    for i, (key, used, full) in enumerate(order, 1):
        spent += used
        if full:
            trained.add(key)
        if front <= trained:
            return i, spent
    return None, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher checkpoint (default: the shipped small teacher)")
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds per setting")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_front_efficiency.md"))
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--record", metavar="FILE", help="also write the enumeration's results to this JSON file")
    keep.add_argument("--replay", metavar="FILE", help="take the enumeration's results from this JSON file")
    args = parser.parse_args()

    from benchmarks.search_default_time import machine
    from prunesearch.search.budget import parse_budget
    from prunesearch.search.experiment import load_experiment
    from prunesearch.search.pricing import LatencyTablePricer, PriceBook
    from prunesearch.search.results import CandidateResult, front_for

    exp = load_experiment(str(EXPERIMENT))
    book = PriceBook(exp.space.candidates(12), LatencyTablePricer((TARGET,), exp.arch), parse_budget(BUDGET), exp.arch)
    with tempfile.TemporaryDirectory(prefix="prunesearch-front-") as tmp:
        folder = Path(tmp)
        if args.replay:
            saved = json.loads(Path(args.replay).read_text())
            results = [CandidateResult(**r) for r in saved["results"]]
            blocks = {r.key: tuple(r.blocks) for r in results}
            recorded = {k: Recorded(v["accuracy"], [tuple(r) for r in v["reports"]], blocks[k]) for k, v in saved["recorded"].items()}
            steps, wall = saved["steps"], saved["wall"]
        else:
            recorded, results, steps, wall = enumerate_all(folder, args.teacher)
        if args.record:
            saved = {"steps": steps, "wall": wall, "results": [r.to_dict() for r in results]}
            saved["recorded"] = {k: {"accuracy": v.accuracy, "reports": v.reports} for k, v in recorded.items()}
            Path(args.record).write_text(json.dumps(saved, indent=1))
        front = {r.key for r in front_for(results, TARGET)}
        n = len(recorded)
        enum_order = [(c.key, steps, True) for c in sorted(book.feasible(), key=lambda c: (book.prices[c.key][TARGET].per_frame_ms, c))]
        enum_k, _ = found_after(enum_order, front)
        rows = []
        for sampler in SAMPLERS:
            for label, early in early_stop_variants().items():
                found, spent, total = [], [], []
                for seed in range(args.seeds):
                    order = replay(recorded, steps, book, exp.space, sampler, seed, early, folder)
                    k, used = found_after(order, front)
                    total.append(sum(u for _, u, _ in order))
                    if k is not None:
                        found.append(k)
                        spent.append(used)
                rows.append((sampler, label, found, spent, total))
    lines = [
        "# Fine-tunes needed to find the whole front",
        "",
        f"Command: `python -m benchmarks.search_front_efficiency --seeds {args.seeds}"
        f"{' --teacher ' + args.teacher if args.teacher else ''}`; machine: {machine()}.",
        "",
        f"Space: {EXPERIMENT.relative_to(ROOT)} ({n} candidates, all within {BUDGET} on {TARGET}), "
        f"{steps}-step fine-tunes, accuracy scale {results[0].accuracy_scale}. Enumerating them all with the real pipeline took {wall:.0f} s.",
        f"True front on {TARGET} ({len(front)} of {n}): "
        + ", ".join(f"{r.key} (AO {100 * r.ao:.1f}, {r.latency_ms[TARGET]:.2f} ms)" for r in front_for(results, TARGET)) + ".",
        "",
        f"Enumeration needs all {n} fine-tunes ({n * steps} steps) to know it has the front; in its own order",
        f"(fastest first) the last front member comes at fine-tune {enum_k}.",
        "",
        f"| sampler | early stopping | front found (of {args.seeds} seeds) | fine-tunes until found: median / mean / worst | steps until found (mean) | steps for all {n} (mean) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for sampler, label, found, spent, total in rows:
        stats = f"{statistics.median(found):.0f} / {statistics.mean(found):.1f} / {max(found)}" if found else "-"
        mean_steps = f"{statistics.mean(spent):.0f}" if spent else "-"
        lines.append(f"| {sampler} | {label} | {len(found)} | {stats} | {mean_steps} | {statistics.mean(total):.0f} |")
    lines += [
        "",
        "A run that is not found had a front member stopped early (its intermediate loss trailed a faster",
        "candidate's). NSGA-II's first generation (population 50) is random sampling, so on a space this",
        "small it matches the random sampler seed for seed.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
