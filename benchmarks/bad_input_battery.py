"""The bad-input battery as a user meets it: every row of tests/bad_inputs.py as a real `prunesearch`
process, under a time and memory limit, counted by outcome.

Outcomes: one-line (non-zero exit, one line on stderr, no traceback), traceback, silent (exit 0,
or at the time limit still at work: printing progress or generating its data), hang (past the time limit with nothing
printed, or killed, e.g. by the memory limit), other (non-zero exit, several lines); and whether
the case left a file behind in its working folder.

    python -m benchmarks.bad_input_battery                          # this checkout
    python -m benchmarks.bad_input_battery --code /work/main --name before   # another checkout, for comparison
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bad_inputs import CASES, materialize, snapshot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MEMORY_LIMIT = 4 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def run_case(case, folder: Path, code: Path, timeout: float) -> dict:
    argv = materialize(case, folder)
    env = dict(os.environ, PYTHONPATH=str(code), MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
               PRUNESEARCH_CACHE=str(folder / "cache"), OMP_NUM_THREADS="1")
    before = snapshot(folder)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "prunesearch", *argv], cwd=folder, env=env, capture_output=True,
                              text=True, errors="replace", timeout=timeout, preexec_fn=_limit_memory)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as timed_out:
        rc, out, err = None, _text(timed_out.stdout), _text(timed_out.stderr)
    seconds = time.perf_counter() - started
    lines = err.strip().splitlines()
    left = sorted(snapshot(folder) - before)
    if rc is None and (out.strip() or any(p.startswith("cache") for p in left)):
        outcome = "silent"  # accepted: at the limit the search was printing progress or generating its data
    elif rc is None or rc < 0:
        outcome = "hang"
    elif "Traceback" in out + err:
        outcome = "traceback"
    elif rc == 0:
        outcome = "silent"
    elif len(lines) == 1:
        outcome = "one-line"
    else:
        outcome = "other"
    return {"case": case.name, "outcome": outcome, "rc": rc, "seconds": seconds, "left": left,
            "line": (lines[-1] if lines else "")[:160], "line_chars": max((len(x) for x in lines), default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose prunesearch runs (default: this one)")
    parser.add_argument("--name", default="after", help="label of this run in the results file")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--skip", action="append", default=[], metavar="CASE",
                        help="leave a case out (e.g. workers_1000 against an unfixed checkout: it forks 1000 processes)")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            if case.name in args.skip:
                continue
            row = run_case(case, Path(tmp) / f"{i:02d}-{case.name}", args.code.resolve(), args.timeout)
            rows.append(row)
            print(f"{row['outcome']:>9} {row['seconds']:6.1f} s  {case.name}: {row['line'][:100]}", flush=True)
    counts = Counter(r["outcome"] for r in rows)
    left = sum(1 for r in rows if r["left"])
    lines = [
        f"# Bad-input battery ({args.name})",
        "",
        "`python -m benchmarks.bad_input_battery" + ("" if args.code.resolve() == ROOT else f" --code {args.code}")
        + f" --name {args.name} --timeout {args.timeout:g}" + "".join(f" --skip {c}" for c in args.skip) + "` "
        f"(each case a fresh `python -m prunesearch` process, {args.timeout:.0f} s and {MEMORY_LIMIT >> 30} GiB limits; "
        f"load average before: {load[0]:.2f}, {os.cpu_count()} CPUs)"
        + (f"; left out: {', '.join(args.skip)}." if args.skip else "."),
        "",
        f"**{len(rows)} cases: {counts['one-line']} one-line, {counts['traceback']} tracebacks, "
        f"{counts['silent']} silent, {counts['hang']} hangs, {counts['other']} other; {left} left a file behind; "
        f"longest error line {max(r['line_chars'] for r in rows)} characters; slowest case {max(r['seconds'] for r in rows):.1f} s.**",
        "",
        "| case | outcome | exit | s | left behind | last stderr line (cut) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        line = r["line"].replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['outcome']} | {r['rc']} | {r['seconds']:.1f} | {', '.join(r['left'])[:60]} | {line} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bad_input_battery_{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
