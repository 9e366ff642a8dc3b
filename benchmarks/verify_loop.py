"""The hardware loop on this CPU: verify a trained front, derive a table from the figures, re-price.

1. A tiny real search (small architecture, six trained candidates, tests/support/verify_search.py),
   priced on ``epyc-opt``, the measured CPU table x0.7: a table that is wrong for this machine.
2. ``prunesearch verify`` of all six trained candidates plus the teacher at ``--runs`` frames each,
   against the measured table: cold (graphs exported) and warm (graphs from the cache), here and
   through a real sshd on 127.0.0.1.
3. The x0.7 loop: verify against ``epyc-opt`` with ``--derive`` (p99 figures), then verify the
   front re-priced with the derived table: front members over the budget at p99, before and after.
4. Re-pricing 100 trained candidates (a synthetic store, tests/support/trained_store.py) on a table
   the search never used: the re-pricing itself, and the whole ``prunesearch pareto`` command.

Writes ``benchmarks/results/verify_loop.md``.

    python -m benchmarks.verify_loop                 # 200 runs per model
    python -m benchmarks.verify_loop --runs 500
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
from pathlib import Path

from prunesearch.latency.registry import load_table
from prunesearch.search.mlflow_runs.read import read_results
from prunesearch.search.verification import reprice
from tests.support.ssh_server import SshServer
from tests.support.trained_store import write_trained_runs
from tests.support.verify_search import MEASURED, OPTIMISTIC, RUN, verify_search_folder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LOOP_BUDGET = "2.5ms"  # a budget some of the six fit on this CPU and some do not


def prunesearch(folder: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    """``python -m prunesearch ARGS`` in ``folder`` with its store; wall seconds and the result."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", OMP_NUM_THREADS="1",
               PRUNESEARCH_CACHE=str(folder / "cache"), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "prunesearch", *args], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"prunesearch {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started, done


def verify(folder: Path, *args: str) -> tuple[float, dict]:
    seconds, done = prunesearch(folder, "verify", "--experiment", "tiny.yaml", *args, "--json")
    return seconds, json.loads(done.stdout)


def figures_table(doc: dict) -> list[str]:
    lines = ["| model | status | priced ms | p50 | p90 | p99 | template ms | p99 within budget | drift |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        fits = {True: "yes", False: "**no**", None: ""}[m["within_budget_p99"]]
        lines.append(f"| {m['model']} | {m['status']} | {m['priced_ms']:.3f} | {m['p50_ms']:.3f} | {m['p90_ms']:.3f} | "
                     f"{m['p99_ms']:.3f} | {m['template_ms']:.3f} | {fits} | {100 * m['drift']:+.1f}% |")
    tau = doc["kendall_tau"]
    lines += ["", f"median drift {100 * doc['median_drift']:+.1f}%, Kendall tau {tau:.2f}" if tau is not None else ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    timing = ["--runs", str(args.runs), "--warmup", str(args.warmup)]
    out: list[str] = ["# The hardware loop on this CPU: verify, derive, re-price", ""]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="verify-loop-") as tmp:
        folder = Path(tmp)
        verify_search_folder(folder)
        search_s, _ = prunesearch(folder, *RUN)

        # 2. the six trained candidates and the teacher, against the measured table
        cold_s, cold = verify(folder, "--target", MEASURED, "--members", "all", *timing)
        warm_s, warm = verify(folder, "--target", MEASURED, "--members", "all", *timing)
        server = SshServer.start() if SshServer.available() else None
        ssh_s = ssh = None
        if server is not None:
            try:
                client = server.client()
                flags = ["--host", server.host, "--identity", str(client["identity"]), "--remote-tmp", client["remote_tmp"],
                         "--python", sys.executable]
                for option in client["options"]:
                    flags += ["--ssh-option", option]
                ssh_s, ssh = verify(folder, "--target", MEASURED, "--members", "all", *timing, *flags)
            finally:
                server.stop()

        # 3. the x0.7 loop
        loop = ["--members", "all", "--budget", LOOP_BUDGET, *timing]
        before_s, before = verify(folder, "--target", OPTIMISTIC, *loop, "--derive", "epyc-fixed", "--statistic", "p99")
        after_s, after = verify(folder, "--target", "epyc-fixed", *loop)
        derived = before["derived"]

        # 4. re-pricing 100 candidates
        store = folder / "synthetic"
        store.mkdir()
        uri = f"sqlite:///{store / 'mlflow.db'}"
        write_trained_runs(uri, "synthetic", 100)
        stored = read_results(uri, "synthetic")
        table = load_table(MEASURED)
        laps = []
        for _ in range(20):
            started = time.perf_counter()
            rep = reprice(stored, table, "synthetic")
            laps.append(time.perf_counter() - started)
        pareto_s, done = prunesearch(store, "pareto", "--experiment", "synthetic", "--target", MEASURED, "--budget", "3ms",
                                     "--json")
        front = json.loads(done.stdout)["fronts"][MEASURED]

    members = [m for m in before["models"] if m["status"] != "teacher"]
    repriced_front = ", ".join(f"{r['candidate']} ({r['frame_ms']:.2f} ms)" for r in derived["front"])
    cmd = f"python -m benchmarks.verify_loop --runs {args.runs} --warmup {args.warmup}"
    out += [f"`{cmd}`", "",
            f"Machine: {cold['device'].get('name')}, {cold['device'].get('cores')} cores, load {load:.2f} at the start "
            f"(a shared machine: wall-clock figures are provisional); onnxruntime {cold['device'].get('onnxruntime')}, "
            f"settings from each table's meta ({cold['settings'].get('provider')}, "
            f"{cold['settings'].get('threads_used')} thread, clock {cold['settings'].get('clock')}).", "",
            f"The tiny search (`{' '.join(RUN)}`, six fine-tunes): {search_s:.0f} s.", "",
            "## Verify: six trained candidates plus the teacher, 200 timed frames each", "",
            "| where | graphs | wall s (whole command) |", "|---|---|---|",
            f"| this machine | exported (cold cache) | {cold_s:.1f} |",
            f"| this machine | from the graph cache | {warm_s:.1f} |"]
    if ssh is not None:
        out.append(f"| sshd on 127.0.0.1 | from the graph cache, copied over ssh | {ssh_s:.1f} |")
    out += ["", "The whole command: python start-up, reading the store, graphs (one front member's from its logged model, "
            "five exported from their checkpoints and the teacher's, or all from the cache), timing, recording in MLflow.",
            "", f"Against `{MEASURED}` (warm run, this machine):", "", *figures_table(warm), ""]
    if ssh is not None:
        out += ["Same over ssh:", "", *figures_table(ssh), ""]
    out += ["Warnings against the table's meta: " + ("; ".join(warm["warnings"]) or "none"), "",
            "## The x0.7 table: caught, derived, re-priced", "",
            f"`prunesearch verify --experiment tiny.yaml --target {OPTIMISTIC} --members all --budget {LOOP_BUDGET} "
            f"--runs {args.runs} --derive epyc-fixed --statistic p99` ({before_s:.0f} s):", "", *figures_table(before), "",
            f"Every member over its price: {sum(m['drift'] > 0 for m in members)} of {len(members)}; "
            f"priced within {LOOP_BUDGET} on {OPTIMISTIC}: {sum(m['priced_ms'] <= before['budget_ms'] for m in members)} of "
            f"{len(members)}; measured p99 within it: {sum(bool(m['within_budget_p99']) for m in members)}; "
            f"front members over the budget at p99: {', '.join(before['front_over_budget']) or 'none'}.", "",
            f"Derived `epyc-fixed` ({derived['tie']}); leave-one-out errors:", "",
            "| model | figure ms (p99) | fitted ms | leave-one-out % |", "|---|---|---|---|",
            *[f"| {v['name']} | {v['published_ms']:.3f} | {v['fitted_ms']:.3f} | {v['loo_error_pct']:+.1f} |"
              for v in derived["variants"]], "",
            f"Front and tied candidates re-priced with it within {LOOP_BUDGET}: {repriced_front or 'none'}.", "",
            f"`prunesearch verify --experiment tiny.yaml --target epyc-fixed --members all --budget {LOOP_BUDGET} "
            f"--runs {args.runs}` ({after_s:.0f} s):", "", *figures_table(after), "",
            f"**Front members over the budget at p99: before {len(before['front_over_budget'])} "
            f"({', '.join(before['front_over_budget']) or 'none'}), after {len(after['front_over_budget'])} "
            f"({', '.join(after['front_over_budget']) or 'none'}).**", "",
            "## Re-pricing 100 trained candidates on a table the search never used", "",
            f"Synthetic store (tests/support/trained_store.py): 100 trained candidates of the small architecture priced "
            f"(wrongly, 999 ms) on orin-nx, re-priced with `{MEASURED}`.", "",
            f"- `reprice()` of the 100 (prices from the table and each recorded shape): median "
            f"{1000 * statistics.median(laps):.2f} ms over {len(laps)} repeats, {len(rep.results)} candidates",
            f"- the whole `prunesearch pareto --experiment synthetic --target {MEASURED} --budget 3ms --json` "
            f"(python start-up, reading 100 runs from MLflow, re-pricing, front): {pareto_s:.1f} s; front of {len(front)}", ""]
    path = RESULTS / "verify_loop.md"
    path.write_text("\n".join(out))
    print(path.read_text())


if __name__ == "__main__":
    main()
