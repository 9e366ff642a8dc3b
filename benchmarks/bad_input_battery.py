"""The bad-input battery as a user meets it: every row of tests/support/bad_inputs.py as a real `prunesearch`
process, under a time and memory limit, counted by outcome.

Outcomes: one-line (non-zero exit, one line on stderr, no traceback), traceback, silent (exit 0,
or at the time limit still at work: printing progress or generating its data), hang (past the time limit with nothing
printed, or killed, e.g. by the memory limit), other (non-zero exit, several lines); and whether
the case left a file behind in its working folder.

    python -m benchmarks.bad_input_battery                          # this checkout
    python -m benchmarks.bad_input_battery --code /work/main --name before   # another checkout, for comparison
    python -m benchmarks.bad_input_battery --surface --timeout 30   # the surface table (tests/support/input_surface.py)

``--surface`` runs every cross of tests/support/input_surface.py's table (each CLI flag taking a path or a
number, each file kind, times the classes of bad value) instead of the hand-written rows. Cases
that need an unreadable or read-only path run without root's file-permission override (``setpriv``
dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; as any other user, chmod does it already).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support, when run as a script

from tests.support import input_surface  # noqa: E402
from tests.support.bad_inputs import CASES, materialize, snapshot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MEMORY_LIMIT = 4 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


# Root reads and writes through any file mode; without these two capabilities chmod holds for it too.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged_prefix() -> list[str] | None:
    """How to run a case without root's permission override: nothing as another user, setpriv as root (None: impossible)."""
    if os.geteuid() != 0:
        return []
    return UNPRIVILEGED if shutil.which("setpriv") else None


def run_case(case, folder: Path, code: Path, timeout: float, surface: bool = False) -> dict:
    argv = (input_surface.materialize if surface else materialize)(case, folder)
    prefix = unprivileged_prefix() if getattr(case, "unprivileged", False) else []
    if prefix is None:
        return {"case": case.name, "outcome": "skipped", "rc": None, "seconds": 0.0, "left": [],
                "line": "needs setpriv to run without root's permission override", "line_chars": 0}
    env = dict(os.environ, PYTHONPATH=str(code), MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
               PRUNESEARCH_CACHE=str(folder / "cache"), OMP_NUM_THREADS="1")
    before = snapshot(folder)
    started = time.perf_counter()
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "prunesearch", *argv], cwd=folder, env=env, capture_output=True,
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
    parser.add_argument("--surface", action="store_true", help="run the surface table of tests/support/input_surface.py")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (each is its own process)")
    parser.add_argument("--only", default="", metavar="PREFIX", help="with --surface: only cases whose name starts so")
    args = parser.parse_args()
    if args.surface and args.name == "after":
        args.name = "surface"
    load = os.getloadavg()
    rows = []
    cases = [c for c in input_surface.cases() if c.name.startswith(args.only)] if args.surface else CASES
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        def one(i: int) -> dict:
            return run_case(cases[i], Path(tmp) / f"{i:03d}-{cases[i].name.replace('/', '-')}", args.code.resolve(),
                            args.timeout, args.surface)

        for row in pool.map(one, [i for i, c in enumerate(cases) if c.name not in args.skip]):
            rows.append(row)
            print(f"{row['outcome']:>9} {row['seconds']:6.1f} s  {row['case']}: {row['line'][:100]}", flush=True)
            write_results(args, rows, load, len(cases) - len(args.skip))  # each time: a stopped run still leaves its figures
    print(f"wrote {write_results(args, rows, load, len(rows))}")


def write_results(args: argparse.Namespace, rows: list[dict], load: tuple[float, ...], planned: int) -> Path:
    counts = Counter(r["outcome"] for r in rows)
    left = sum(1 for r in rows if r["left"])
    lines = [
        f"# Bad-input battery ({args.name})",
        "",
        "`python -m benchmarks.bad_input_battery" + ("" if args.code.resolve() == ROOT else f" --code {args.code}")
        + (" --surface" if args.surface else "") + (f" --only {args.only}" if args.only else "")
        + f" --name {args.name} --timeout {args.timeout:g}" + (f" --jobs {args.jobs}" if args.jobs > 1 else "")
        + "".join(f" --skip {c}" for c in args.skip) + "` "
        f"(each case a fresh `python -m prunesearch` process, {args.timeout:.0f} s and {MEMORY_LIMIT >> 30} GiB limits; "
        f"load average before: {load[0]:.2f}, {os.cpu_count()} CPUs)"
        + (f"; left out: {', '.join(args.skip)}." if args.skip else "."),
        "",
        *([f"**Stopped after {len(rows)} of {planned} cases.**", ""] if len(rows) < planned else []),
        f"**{len(rows)} cases: {counts['one-line']} one-line, {counts['traceback']} tracebacks, "
        f"{counts['silent']} silent, {counts['hang']} hangs, {counts['other']} other"
        + (f", {counts['skipped']} skipped" if counts["skipped"] else "") + f"; {left} left a file behind; "
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
    return out


if __name__ == "__main__":
    main()
