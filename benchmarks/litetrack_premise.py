"""LiteTrack's premise at small scale, and how well the search's brief fine-tune ranks candidates.

Run from the repository root (about 40 minutes on 2 cores; resumable):

    python -m benchmarks.litetrack_premise
    python -m benchmarks.litetrack_premise --report-only     # re-render the tables from the JSON

Three questions, all on the shipped small teacher, the built-in train split and the full built-in
val split (25 sequences), with the default experiment's fine-tune budget (experiments/b4-b9.yaml):

1. Initialisation: do students pruned from the teacher (first-N blocks, distilled) beat the same
   students trained from scratch on the same budget? Scratch students get every weight at the full
   learning rate (``backbone_lr_mult`` 1, as the teacher's own recipe) and the same distillation,
   so the only handicap they carry is their initialisation. Do deeper students score higher?
2. Block choice: first-N against uniform and influence-ranked blocks, same budget.
3. Ranking: Kendall tau between the AO after the brief budget and after a 5x longer one, over the
   ``--tau-students`` candidates. A tau near 1 means the search's brief fine-tune orders candidates
   as a longer one would.

Each (student, initialisation, rule, steps) job runs in its own worker process with one torch
thread; finished jobs are kept in benchmarks/results/litetrack_premise.json (keyed by teacher
hash and budget), so an interrupted run continues. Writes benchmarks/results/litetrack_premise.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau

from prunesearch.search.experiment import load_experiment
from prunesearch.search.reproducibility import file_sha256
from prunesearch.teacher import SHIPPED_TEACHER

RESULTS = Path(__file__).parent / "results"
PREMISE_PAIRS = ("4-2", "6-3", "8-3", "9-3")
RULE_PAIRS = ("4-2", "6-3", "8-3")
TAU_PAIRS = ("4-2", "5-2", "6-1", "6-3", "7-2", "8-3", "9-1", "9-3")
LONG_FACTOR = 5


@dataclass(frozen=True)
class Job:
    student: str  # "N-M"
    init: str  # "teacher" or "scratch"
    rule: str  # block-choice rule when init is "teacher"
    steps: int

    @property
    def key(self) -> str:
        return f"B{self.student}/{self.init}/{self.rule}/{self.steps}"


def plan(brief: int, tau_pairs: tuple[str, ...]) -> list[Job]:
    """Every job the three questions need, brief ones first, each once."""
    jobs = [Job(p, "teacher", "first", brief) for p in PREMISE_PAIRS]
    jobs += [Job(p, "scratch", "-", brief) for p in PREMISE_PAIRS]
    jobs += [Job(p, "teacher", r, brief) for p in RULE_PAIRS for r in ("uniform", "influence")]
    jobs += [Job(p, "teacher", "first", brief) for p in tau_pairs]
    longs = sorted(tau_pairs, key=lambda p: -int(p.split("-")[0]))
    jobs += [Job(p, "teacher", "first", brief * LONG_FACTOR) for p in longs]
    return list(dict.fromkeys(jobs))


_STATE: dict[str, Any] = {}


def _init_worker(teacher_path: str, finetune: Any) -> None:
    import torch

    from prunesearch.checkpoints import load_checkpoint
    from prunesearch.data.synthetic import builtin_sequences
    from prunesearch.data.processing import CropGeometry
    from prunesearch.pruning import CALIBRATION_PAIRS, calibration_batch

    torch.set_num_threads(1)
    teacher = load_checkpoint(teacher_path).eval()
    train = builtin_sequences("train")
    _STATE.update(
        teacher=teacher,
        train=train,
        val=builtin_sequences("val"),
        finetune=finetune,
        calibration=calibration_batch(teacher, train, CALIBRATION_PAIRS, CropGeometry()),
    )


def _run(job: Job) -> dict[str, Any]:
    import torch

    from prunesearch.evaluation import evaluate
    from prunesearch.models.vit_tracker import StudentSpec, build_student
    from prunesearch.pruning import student_from_teacher
    from prunesearch.training import finetune

    teacher = _STATE["teacher"]
    depth, ai = (int(v) for v in job.student.split("-"))
    cfg = replace(_STATE["finetune"], steps=job.steps, threads=1)
    if job.init == "scratch":
        torch.manual_seed(cfg.seed)
        student = build_student(teacher.cfg, StudentSpec(depth, ai))
        cfg = replace(cfg, backbone_lr_mult=1.0)
    else:
        calib = _STATE["calibration"] if job.rule == "influence" else None
        student = student_from_teacher(teacher, depth, ai, job.rule, calibration=calib)
    start = time.perf_counter()
    trained = finetune(student, _STATE["train"], cfg, teacher=teacher)
    tuned = time.perf_counter()
    scores = evaluate(student.eval(), _STATE["val"])
    return {
        **asdict(job),
        "status": trained.status,
        "blocks": list(student.spec.blocks),
        "final_loss": trained.final_loss,
        "ao": scores.ao,
        "sr50": scores.sr50,
        "sr75": scores.sr75,
        "auc": scores.auc,
        "finetune_s": tuned - start,
        "evaluate_s": time.perf_counter() - tuned,
    }


def run_jobs(jobs: list[Job], teacher: str, finetune: Any, store: Path, workers: int) -> dict[str, dict]:
    """Run the jobs not yet in ``store``, saving each result as it lands."""
    done: dict[str, dict] = json.loads(store.read_text()) if store.is_file() else {}
    todo = [j for j in jobs if j.key not in done]
    print(f"{len(jobs) - len(todo)} jobs already done, {len(todo)} to run on {workers} workers", flush=True)
    if not todo:
        return done
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(teacher, finetune)) as pool:
        futures = {pool.submit(_run, job): job for job in todo}
        for future in as_completed(futures):
            row = future.result()
            done[futures[future].key] = row
            store.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
            print(f"{futures[future].key}: {row['status']} AO {row['ao']:.3f} "
                  f"({row['finetune_s']:.0f}s + {row['evaluate_s']:.0f}s)", flush=True)
    return done


def report(done: dict[str, dict], brief: int, tau_pairs: tuple[str, ...], header: list[str]) -> list[str]:
    def ao(student: str, init: str = "teacher", rule: str = "first", steps: int = brief) -> float:
        return done[Job(student, init, rule, steps).key]["ao"]

    lines = [*header, "", "## 1. From the teacher against from scratch (same budget)", ""]
    lines += ["| student | from teacher (first-N) AO | from scratch AO | difference |", "| --- | ---: | ---: | ---: |"]
    wins = 0
    for p in PREMISE_PAIRS:
        t, s = ao(p), ao(p, "scratch", "-")
        wins += t > s
        lines.append(f"| B{p} | {t:.3f} | {s:.3f} | {t - s:+.3f} |")
    lines += ["", f"From-teacher students win {wins} of {len(PREMISE_PAIRS)} pairs."]
    by_depth: dict[int, list[float]] = {}
    for p in dict.fromkeys((*PREMISE_PAIRS, *tau_pairs)):
        by_depth.setdefault(int(p.split("-")[0]), []).append(ao(p))
    means = {d: sum(v) / len(v) for d, v in sorted(by_depth.items())}
    depths = list(means)
    order = kendalltau(depths, [means[d] for d in depths]).statistic
    lines += [
        "",
        "Mean AO by depth over every from-teacher student on the brief budget "
        f"(Kendall tau of depth against mean AO: {order:.2f}):",
        "",
        "| depth | students | mean AO |",
        "| ---: | ---: | ---: |",
        *(f"| {d} | {len(by_depth[d])} | {means[d]:.3f} |" for d in depths),
        "",
        "## 2. Block-choice rules (from the teacher, same budget)",
        "",
        "| student | first | uniform | influence |",
        "| --- | ---: | ---: | ---: |",
    ]
    rule_means = {r: 0.0 for r in ("first", "uniform", "influence")}
    for p in RULE_PAIRS:
        row = {r: ao(p, rule=r) for r in rule_means}
        for r, v in row.items():
            rule_means[r] += v / len(RULE_PAIRS)
        blocks = {r: done[Job(p, "teacher", r, brief).key]["blocks"] for r in row}
        lines.append(f"| B{p} | " + " | ".join(f"{row[r]:.3f} {blocks[r]}" for r in row) + " |")
    lines.append("| mean | " + " | ".join(f"{v:.3f}" for v in rule_means.values()) + " |")
    longs = [ao(p, steps=brief * LONG_FACTOR) for p in tau_pairs]
    briefs = [ao(p) for p in tau_pairs]
    tau = kendalltau(briefs, longs).statistic
    lines += [
        "",
        f"## 3. Ranking: brief ({brief} steps) against {LONG_FACTOR}x longer ({brief * LONG_FACTOR} steps)",
        "",
        f"**Kendall tau over {len(tau_pairs)} candidates: {tau:.2f}.**",
        "",
        f"| student | AO {brief} steps | AO {brief * LONG_FACTOR} steps | gain |",
        "| --- | ---: | ---: | ---: |",
        *(f"| B{p} | {b:.3f} | {g:.3f} | {g - b:+.3f} |" for p, b, g in zip(tau_pairs, briefs, longs)),
    ]
    seconds = sum(r["finetune_s"] + r["evaluate_s"] for r in done.values())
    lines += ["", f"Worker time over all {len(done)} jobs: {seconds / 60:.0f} min (one torch thread each)."]
    return lines


def main() -> None:
    from prunesearch.latency.runtime import machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHIPPED_TEACHER))
    parser.add_argument("--experiment", default="b4-b9", help="the experiment whose fine-tune budget is the brief one")
    parser.add_argument("--tau-students", nargs="+", default=list(TAU_PAIRS), metavar="N-M")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "litetrack_premise.md"))
    args = parser.parse_args()

    experiment = load_experiment(args.experiment)
    finetune = experiment.finetune_config()
    brief = int(finetune.steps)
    tau_pairs = tuple(args.tau_students)
    out = Path(args.out)
    teacher_hash = file_sha256(args.teacher)[:12]
    store = out.with_name(f"{out.stem}-{teacher_hash}-{brief}.json")
    jobs = plan(brief, tau_pairs)
    if args.report_only:
        done = json.loads(store.read_text())
    else:
        done = run_jobs(jobs, args.teacher, finetune, store, args.workers)
    m = machine_info()
    header = [
        "# LiteTrack's premise at small scale, and the brief fine-tune's ranking",
        "",
        f"Command: `{' '.join(['python -m benchmarks.litetrack_premise', *sys.argv[1:]])}`; "
        f"raw results: `{store.name}` beside this file.",
        "",
        f"Teacher: `{Path(args.teacher).name}` (sha256 {teacher_hash}), small preset. Budget: experiment "
        f"`{experiment.name}`'s fine-tune ({brief} steps x batch {finetune.batch_size}, distillation "
        f"from the teacher). Data: built-in train split; AO on the full built-in val split. One seed per job: "
        f"differences of a few thousandths are noise. Machine: {m['cores']} CPUs ({m['cpu']}), torch {m['torch']}.",
    ]
    lines = report(done, brief, tau_pairs, header)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
