"""Repeated trials of a shared search: what is lost, trained twice or left RUNNING, and what crashes.

    python -m benchmarks.shared_search rehearsal --repeat 10    # tests/search/test_rehearsal.py, counted
    python -m benchmarks.shared_search e2e --repeat 20          # the kill/resume e2e test, a suite copy beside it
    python -m benchmarks.shared_search start4 --repeat 10       # 4 `prunesearch run` at once on a fresh store
    ... [--minutes M]   stop starting repetitions after M minutes (the counts say how many ran)

Each mode appends its table to benchmarks/results/shared_search.md (one section per mode, replaced
when run again) with the command and the machine's load. Tests check correctness; this records
how often, on this machine, the races that issue 11 fixed would still show.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "shared_search.md"
RUN = ["-m", "prunesearch", "run", "--experiment", "tiny.yaml", "--target", "orin-nx", "--budget", "9ms"]


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _pytest(node: str, env: dict[str, str] | None = None) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", node], cwd=ROOT,
                          env=env or dict(os.environ), capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout[-20000:]


def _why(out: str) -> str:
    """The assertion lines of a failed pytest run (``E ...``), else its last line."""
    failed = [line[1:].strip() for line in out.splitlines() if line.startswith("E ")][:3]
    return " / ".join(failed) or (out.strip().splitlines()[-1] if out.strip() else "no output")


def rehearsal(repeat: int, deadline: float) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        env = dict(os.environ, PRUNESEARCH_REHEARSAL_REPORT=str(report))
        for i in range(repeat):
            if time.time() > deadline:
                break
            start = time.time()
            ok, out = _pytest("tests/search/test_rehearsal.py", env)
            seconds = time.time() - start
            counts = json.loads(report.read_text().splitlines()[-1]) if report.exists() and report.read_text() else {}
            report.unlink(missing_ok=True)
            rows.append(
                f"| {i + 1} | {'pass' if ok else 'FAIL'} | {counts.get('lost', '?')} | {counts.get('trained_twice', '?')} "
                f"| {counts.get('running', '?')} | {seconds:.0f} | {load()} |"
            )
            if not ok:
                notes.append(f"repetition {i + 1}: {_why(out)}")
    head = ["| # | test | trials lost | trained twice | runs or trials left RUNNING | seconds | load after |",
            "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    return head + rows, notes


def e2e(repeat: int, deadline: float) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    node = "tests/search/test_e2e_search.py::test_run_kill_resume_with_two_workers_then_pareto"
    beside = subprocess.Popen(
        ["bash", "-c", f"while true; do {sys.executable} -m pytest -q -p no:cacheprovider tests >/dev/null 2>&1; done"],
        cwd=ROOT, start_new_session=True,
    )
    try:
        for i in range(repeat):
            if time.time() > deadline:
                break
            start = time.time()
            ok, out = _pytest(node)
            rows.append(f"| {i + 1} | {'pass' if ok else 'FAIL'} | {time.time() - start:.0f} | {load()} |")
            if not ok:
                notes.append(f"repetition {i + 1}: {_why(out)}")
    finally:
        os.killpg(beside.pid, 15)
        beside.wait()
    return ["| # | test | seconds | load after |", "| ---: | --- | ---: | --- |"] + rows, notes


def _store_whole(folder: Path) -> bool:
    """MLflow's store has no half-made migration and opens; the study storage opens."""
    import optuna
    from mlflow import MlflowClient

    tables = {r[0] for r in sqlite3.connect(folder / "mlflow.db").execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if any(t.startswith("_alembic_tmp") for t in tables):
        return False
    try:
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        optuna.get_all_study_names(f"sqlite:///{folder / 'optuna.db'}")
    except Exception:  # noqa: BLE001 - any failure to open is what is counted
        return False
    return True


def start4(repeat: int, deadline: float) -> tuple[list[str], list[str]]:
    from tests.support.search_support import tiny_search_folder

    import optuna

    from prunesearch.search.study.record import records

    rows, notes = [], []
    for i in range(repeat):
        if time.time() > deadline:
            break
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            tiny_search_folder(folder, "tiny")
            env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
            env.pop("MLFLOW_TRACKING_URI", None)
            start = time.time()
            procs = [subprocess.Popen([sys.executable, *RUN], cwd=folder, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for _ in range(4)]
            outs = [p.communicate(timeout=1800)[0] for p in procs]
            seconds = time.time() - start
            tracebacks = sum("Traceback" in o for o in outs)
            failed = sum(p.returncode != 0 for p in procs)
            whole = _store_whole(folder)
            storage = f"sqlite:///{folder / 'optuna.db'}"
            trained = Counter(
                r.candidate for r in records(optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage))
                if r.outcome == "trained"
            ) if whole else Counter()
            twice = sum(n - 1 for n in trained.values())
            rows.append(f"| {i + 1} | {failed} | {tracebacks} | {'whole' if whole else 'CORRUPTED'} | {len(trained)} | {twice} "
                        f"| {seconds:.0f} | {load()} |")
            for o in outs:
                if "Traceback" in o or re.search(r"error", o, re.I):
                    notes.append(f"repetition {i + 1}: {o.strip().splitlines()[-1]}")
    head = ["| # | processes failed | tracebacks | stores | candidates trained | trained twice | seconds | load after |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    return head + rows, notes


MODES = {
    "rehearsal": ("Multi-machine rehearsal (3 processes, PostgreSQL study, MLflow server, SIGKILL mid-fine-tune and mid-logging)", rehearsal),
    "e2e": ("End-to-end kill -9 / resume with 2 workers, a second copy of the test suite running beside it", e2e),
    "start4": ("4 `prunesearch run` started at once in a fresh folder (SQLite MLflow store and study)", start4),
}


def write(mode: str, repeat: int, table: list[str], notes: list[str], started_load: str) -> None:
    title, _ = MODES[mode]
    ran = len(table) - 2
    section = [
        f"## {mode}: {title}",
        "",
        f"Command: `python -m benchmarks.shared_search {mode} --repeat {repeat}`; {ran} of {repeat} repetitions ran"
        + ("" if ran == repeat else " (stopped by --minutes: the machine was shared and slow)") + ".",
        f"Load average (1, 5, 15 min) at the start: {started_load}; 2 CPU cores shared with other jobs.",
        "",
        *table,
        "",
        *([f"- {n}" for n in notes] or ["No failures."]),
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Sharing a search: repeated rehearsals\n\n"
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p for p in parts if not p.startswith(f"## {mode}:")]
    RESULTS.write_text("".join(kept).rstrip("\n") + "\n\n" + "\n".join(section))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=600.0, help="start no repetition after this many minutes")
    args = parser.parse_args()
    started_load = load()
    table, notes = MODES[args.mode][1](args.repeat, time.time() + 60 * args.minutes)
    write(args.mode, args.repeat, table, notes, started_load)
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
