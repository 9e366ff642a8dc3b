"""Faults and attacks, each as real processes, against this checkout and (optionally) an earlier one:
hostile checkpoints (legacy tar members aimed at a victim file, size bombs under a memory cap),
kill -9 swept through the creation of a fresh MLflow store and a disk that fills during it, a
tracking server that stopped for good (before ``pareto``, and in the middle of ``run``), and
``ui --host 0.0.0.0``.

    python -m benchmarks.fault_attacks                               # this checkout
    python -m benchmarks.fault_attacks --before /tmp/main-checkout   # and an earlier one, side by side
    python -m benchmarks.fault_attacks --only midsearch              # one case; its row replaced in the results

The tmpfs case needs root (mount); it is left out otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.*, when run as a script

import torch  # noqa: E402

from tests.test_checkpoint_attacks import WIDE, _declare, _net_pickle, _rezip, legacy_tar, native_file, stride_zero_net  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fault_attacks.md"
MEMORY_LIMIT = 4 << 30
TIMEOUT_S = 60.0
# Opening a fresh store as every command does, reporting a user error in one line as the CLI does.
CREATE = (
    "import sys\nfrom prunesearch.errors import PrunesearchError\nfrom prunesearch.mlflow_log.store import client\n"
    "try:\n    client('sqlite:///mlflow.db').search_experiments()\n"
    "except PrunesearchError as err:\n    sys.exit(f'prunesearch: error: {err}')"
)


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(code: Path, folder: Path, argv: list[str], timeout: float = TIMEOUT_S, env: dict | None = None) -> dict:
    """One process under the memory cap: exit code (None: killed at the time limit), seconds, peak RSS,
    stderr's line count and last line."""
    full_env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", TMPDIR=str(folder),
                    MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}")
    full_env.update(env or {})
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, cwd=folder, env=full_env, stdout=subprocess.DEVNULL, stderr=err,
                                 preexec_fn=_cap, start_new_session=True)
        deadline = started + timeout
        status = usage = None
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.killpg(child.pid, signal.SIGKILL)
            _, status, usage = os.wait4(child.pid, 0)
            status = None
        err.seek(0)
        lines = [ln for ln in err.read().splitlines() if ln.strip() and not ln.startswith("(Background on this error")]
    code_ = None if status is None else os.waitstatus_to_exitcode(status)
    # The exception's own line of a traceback (SQLAlchemy prints the failed SQL after it), else the last line.
    raised = [ln for ln in lines if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", ln)]
    return {"rc": code_, "s": time.monotonic() - started, "rss_mb": usage.ru_maxrss / 1024, "lines": len(lines),
            "last": (raised or lines or [""])[-1][:150], "traceback": any("Traceback" in ln for ln in lines)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prunesearch", *args]


def _fingerprint(path: Path) -> tuple:
    info = path.lstat()
    return oct(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns


def _outcome(r: dict) -> str:
    if r["rc"] is None:
        return f"hang (killed at {r['s']:.0f} s)"
    if r["rc"] < 0:
        return f"killed by signal {-r['rc']}"
    if r["traceback"]:
        return f"traceback ({r['lines']} lines)"
    if r["rc"] == 0:
        return "exit 0"
    return "one line" if r["lines"] == 1 else f"{r['lines']} lines"


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_cases(code: Path, work: Path) -> list[tuple[str, str, dict, str]]:
    rows = []
    for kind in ("hardlink", "symlink", "fifo", "device"):
        folder = work / f"tar-{kind}"
        (folder / "victim").mkdir(parents=True)
        victim = folder / "victim" / "secret.txt"
        victim.write_text("keep me\n")
        victim.chmod(0o600)
        evil = legacy_tar(folder / "evil.pth.tar", kind, victim)
        out = folder / "out" / "net.pth"
        out.parent.mkdir()
        out.write_bytes(b"earlier")
        before = _fingerprint(victim)
        r = run(code, folder, _cli("checkpoint", "extract", str(evil), str(out)))
        after = _fingerprint(victim)
        note = "victim unchanged" if after == before else f"victim {before[0]} {before[1]}:{before[2]} -> {after[0]} {after[1]}:{after[2]}"
        note += "; OUT kept" if out.read_bytes() == b"earlier" else "; OUT replaced"
        rows.append((f"extract, legacy tar `storages` = {kind}", "`checkpoint extract evil.pth.tar out/net.pth`", r, note))

    folder = work / "bombs"
    folder.mkdir()
    native_file(folder / "wide.pth", embed_dim=8192, num_heads=8)
    native_file(folder / "deep.pth", depth=1_000_000)
    torch.save({"net": stride_zero_net(WIDE)}, folder / "stride0.pth")
    torch.save({"net": {"backbone.blocks.0.attn.qkv.weight": torch.zeros(4)}}, folder / "n.pth")
    _rezip(folder / "n.pth", folder / "declared.pth")
    _declare(folder / "declared.pth", next(n for n in __import__("zipfile").ZipFile(folder / "n.pth").namelist()
                                           if n.endswith("/data/0")), 0xF000_0000)
    torch.save({"net": None}, folder / "shell.pth")
    record = next(n for n in __import__("zipfile").ZipFile(folder / "shell.pth").namelist() if n.endswith("/data.pkl"))
    _rezip(folder / "shell.pth", folder / "deep_pickle.pth", {record: _net_pickle(b"]" * 200_000 + b"a" * 199_999)})
    level: object = [torch.ones(2)] * 10
    for _ in range(8):
        level = [level] * 10
    torch.save({"net": {"backbone.blocks.0.attn.qkv.weight": torch.ones(3)}, "settings": {"laughs": level}}, folder / "laughs.pth")
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    for name, argv in (
        ("wide.pth", ["inspect", "--checkpoint", "wide.pth", "--no-fvcore"]),
        ("deep.pth", ["inspect", "--checkpoint", "deep.pth", "--no-fvcore"]),
        ("wide.pth", ["run", "--teacher", "wide.pth", "--target", "orin-nx", "--budget", "9ms"]),
        ("stride0.pth", ["inspect", "--checkpoint", "stride0.pth", "--no-fvcore"]),
        ("stride0.pth", ["checkpoint", "extract", "stride0.pth", "x.pth"]),
        ("declared.pth", ["inspect", "--checkpoint", "declared.pth", "--no-fvcore"]),
        ("deep_pickle.pth", ["checkpoint", "extract", "deep_pickle.pth", "x.pth"]),
        ("laughs.pth", ["checkpoint", "extract", "laughs.pth", "x.pth"]),
    ):
        (folder / "x.pth").unlink(missing_ok=True)
        r = run(code, folder, _cli(*argv))
        wrote = (folder / "x.pth").stat().st_size if (folder / "x.pth").exists() else None
        note = f"input {sizes[name]} B" + (f"; wrote {wrote} B" if wrote is not None else "")
        rows.append((f"{name} ({argv[0]})", f"`{' '.join(argv)}`", r, note))
    return rows


# --- stores -------------------------------------------------------------------------------------


def _creation_window_kills(code: Path, work: Path, offsets: list[float]) -> tuple[int, int, str]:
    """kill -9 at each offset after the store's file (or its temporary file) appears; then a clean
    process opens the store: how many were left broken, and the first broken one's last line."""
    broken, landed, example = 0, 0, ""
    for i, offset in enumerate(offsets):
        folder = work / f"kill-{i}"
        folder.mkdir(parents=True)
        env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
        child = subprocess.Popen([sys.executable, "-c", CREATE], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        while child.poll() is None and not any(p.name.startswith((".mlflow.db", "mlflow.db")) and not p.name.endswith(".lock")
                                               for p in folder.iterdir()):
            time.sleep(0.002)
        time.sleep(offset)
        if child.poll() is None:
            child.kill()
            landed += 1
        child.wait()
        r = run(code, folder, [sys.executable, "-c", CREATE], timeout=120)
        if r["rc"] != 0:
            broken += 1
            example = example or r["last"]
    return broken, landed, example


def _tmpfs_creation(code: Path, work: Path) -> tuple[dict, dict, str] | None:
    """A fresh store on a 300 KB tmpfs (fills during migration), then the folder's leftovers copied to a
    roomy disk and opened again."""
    if os.geteuid() != 0:
        return None
    mount = work / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True).returncode:
        return None
    try:
        first = run(code, mount, [sys.executable, "-c", CREATE], timeout=120)
        left = sorted(p.name for p in mount.iterdir())
        roomy = work / "after-tmpfs"
        shutil.copytree(mount, roomy)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    again = run(code, roomy, [sys.executable, "-c", CREATE], timeout=120)
    return first, again, ", ".join(left) or "nothing"


def _stopped_server(code: Path, work: Path) -> dict:
    from tests.support.servers import MlflowServer

    server = MlflowServer.launch()
    try:
        server.wait()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-c", f"from mlflow import MlflowClient; MlflowClient({server.uri!r}).create_experiment('x')"],
                       env=env, check=True, capture_output=True)
    finally:
        server.stop()
    folder = work / "server"
    folder.mkdir()
    return run(code, folder, _cli("pareto", "--experiment", "x"), timeout=180, env={"MLFLOW_TRACKING_URI": server.uri})


def _server_stopped_mid_search(code: Path, work: Path) -> dict | None:
    """``run`` (the tiny search of the end-to-end tests, its study in PostgreSQL) against an ``mlflow server``
    stopped for good once a fine-tune is logged; the server started again on the same store at the same
    address, the same ``run`` repeated, then ``pareto``. None without PostgreSQL."""
    import optuna
    from mlflow import MlflowClient

    from prunesearch.search.study.record import records
    from tests.support.search_support import tiny_search_folder
    from tests.support.servers import MlflowServer, Postgres

    postgres = Postgres.launch()
    if postgres is None:
        return None
    server = MlflowServer.launch()
    folder = work / "midsearch"
    folder.mkdir()
    try:
        tiny_search_folder(folder, "tiny")
        storage = postgres.database("midsearch")
        server.wait()
        env = {"MLFLOW_TRACKING_URI": server.uri}
        argv = _cli("run", "--experiment", "tiny.yaml", "--target", "orin-nx", "--budget", "9ms", "--storage", storage)
        ended, stopped = threading.Event(), []

        def stop_after_a_fine_tune() -> None:
            mlflow_client = MlflowClient(server.uri)
            logged = "tags.kind = 'candidate' AND attributes.status = 'FINISHED'"
            while not ended.wait(0.2):
                found = mlflow_client.get_experiment_by_name("tiny")
                if found and mlflow_client.search_runs([found.experiment_id], logged):
                    server.halt()
                    stopped.append(time.monotonic())
                    return

        watcher = threading.Thread(target=stop_after_a_fine_tune, daemon=True)
        watcher.start()
        started = time.monotonic()
        first = run(code, folder, argv, timeout=300, env=env)
        ended.set()
        watcher.join()
        study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        kept = sum(r.outcome == "trained" for r in records(study))
        server = MlflowServer.launch(server.root, server.port)
        server.wait()
        again = run(code, folder, argv, timeout=300, env=env)
        shown = run(code, folder, _cli("pareto", "--experiment", "tiny"), timeout=180, env=env)
        fine_tunes = Counter(r.candidate for r in records(study) if r.outcome == "trained" and r.reused_from is None)
        mlflow_client = MlflowClient(server.uri)
        runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("tiny").experiment_id])
        return {"first": first, "stop_to_exit": started + first["s"] - stopped[0] if stopped else None, "kept": kept,
                "again": again, "pareto": shown, "trained_twice": sum(n - 1 for n in fine_tunes.values()),
                "running": sum(r.info.status == "RUNNING" for r in runs)}
    finally:
        server.stop()
        postgres.stop()


def _ui_remote(code: Path, work: Path) -> tuple[str, str]:
    folder = work / "ui"
    folder.mkdir()
    subprocess.run([sys.executable, "-c", CREATE], cwd=folder, env=dict(os.environ, PYTHONPATH=str(code)), check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(code), MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}")
    child = subprocess.Popen(_cli("ui", "--host", "0.0.0.0", "--port", str(port), "--no-browser"), cwd=folder, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=90)
        return "refused", (err.strip().splitlines() or [""])[-1][:150]
    except subprocess.TimeoutExpired:
        with socket.socket() as probe:
            listening = probe.connect_ex(("127.0.0.1", port)) == 0
        os.killpg(child.pid, signal.SIGTERM)
        child.communicate(timeout=60)
        return ("serving on 0.0.0.0 after 90 s" if listening else "running, not listening"), ""


def measure(code: Path, offsets: list[float], only: str | None = None) -> dict:
    cases = {
        "checkpoints": checkpoint_cases,
        "kills": lambda code, work: _creation_window_kills(code, work, offsets),
        "tmpfs": _tmpfs_creation,
        "server": _stopped_server,
        "midsearch": _server_stopped_mid_search,
        "ui": _ui_remote,
    }
    with tempfile.TemporaryDirectory(prefix="fault-attacks-") as tmp:
        result = {}
        for name, case in cases.items():
            if only in (None, name):
                result[name] = case(code, Path(tmp))
                print(f"{name} done", flush=True)
        return result


def store_rows(cell: dict, names: list[str], offsets: list[float]) -> dict[str, str]:
    """The rows of the stores-and-server table, by case, for the cases measured."""
    rows = {}
    if "kills" in cell[names[0]]:
        rows["kills"] = (f"| kill -9 at {offsets} s after the store's file appears, then a clean open | "
                         + " | ".join(f"{cell[n]['kills'][0]} of {cell[n]['kills'][1]} kills left a store that fails to open"
                                      + (f" (`{cell[n]['kills'][2][:120]}`)" if cell[n]['kills'][2] else "") for n in names) + " |")
    if all(cell[n].get("tmpfs") for n in names):
        rows["tmpfs"] = ("| fresh store on a 300 KB tmpfs, then its leftovers opened on a roomy disk | " + " | ".join(
            f"{_outcome(cell[n]['tmpfs'][0])} (`{cell[n]['tmpfs'][0]['last'][:100]}`), left: {cell[n]['tmpfs'][2]}; "
            f"reopened: {_outcome(cell[n]['tmpfs'][1])}" + (f" (`{cell[n]['tmpfs'][1]['last'][:100]}`)" if cell[n]['tmpfs'][1]['rc'] else "")
            for n in names) + " |")
    if "server" in cell[names[0]]:
        rows["server"] = ("| `pareto` with MLFLOW_TRACKING_URI at a stopped `mlflow server` | " + " | ".join(
            f"{_outcome(cell[n]['server'])}, {cell[n]['server']['s']:.1f} s (`{cell[n]['server']['last'][:140]}`)" for n in names) + " |")
    if all(cell[n].get("midsearch") for n in names):
        def mid(m: dict) -> str:
            stop = "never stopped" if m["stop_to_exit"] is None else f"{m['stop_to_exit']:.1f} s after the stop"
            return (f"{_outcome(m['first'])}, {stop} (`{m['first']['last'][:140]}`); {m['kept']} fine-tunes kept in the study; "
                    f"re-run: {_outcome(m['again'])}, {m['trained_twice']} trained twice, {m['running']} runs left RUNNING; "
                    f"`pareto`: {_outcome(m['pareto'])}")
        rows["midsearch"] = ("| `run` with MLFLOW_TRACKING_URI at an `mlflow server` stopped for good once a fine-tune is logged "
                             "(prunesearch's deadline: 10 s, 2 retries), then served again on its store and the same `run` repeated, "
                             "then `pareto` | " + " | ".join(mid(cell[n]["midsearch"]) for n in names) + " |")
    if "ui" in cell[names[0]]:
        rows["ui"] = "| `ui --host 0.0.0.0` | " + " | ".join(
            f"{cell[n]['ui'][0]} {('`' + cell[n]['ui'][1] + '`') if cell[n]['ui'][1] else ''}" for n in names) + " |"
    return rows


def replace_row(text: str, row: str, after: str) -> str:
    """``text`` with the table row whose first cell is ``row``'s replaced by ``row``, or ``row`` added
    after the row whose first cell starts with ``after``."""
    first = row.split(" | ")[0]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split(" | ")[0] == first:
            lines[i] = row
            return "\n".join(lines) + "\n"
    at = next(i for i, line in enumerate(lines) if line.startswith(after))
    return "\n".join(lines[:at + 1] + [row] + lines[at + 1:]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an earlier checkout to run the same cases against")
    parser.add_argument("--kills", type=int, default=8, help="kill -9 points swept through the creation window")
    parser.add_argument("--only", choices=["kills", "tmpfs", "server", "midsearch", "ui"],
                        help="measure one case of the stores-and-server table and replace (or add) its row in the results")
    args = parser.parse_args()
    offsets = [round(0.5 * i / max(args.kills - 1, 1), 3) for i in range(args.kills)]
    load = os.getloadavg()
    runs = {"after": measure(ROOT, offsets, args.only)}
    if args.before:
        runs = {"before": measure(args.before.resolve(), offsets, args.only), **runs}
    names = list(runs)
    if args.only:
        rows = store_rows(runs, names, offsets)
        if args.only not in rows:
            sys.exit(f"{args.only}: not measured here (tmpfs needs root, midsearch PostgreSQL)")
        row = rows[args.only][:-2] + f" (`--only {args.only}`, load average before: {load[0]:.2f}) |"
        if not args.before:  # a single column in a before/after table: this checkout's
            row = row.replace(" | ", " | (not measured) | ", 1) if "| before |" in RESULTS.read_text() else row
        RESULTS.write_text(replace_row(RESULTS.read_text(), row, "| `pareto` with MLFLOW_TRACKING_URI"))
        print(f"updated the {args.only} row of {RESULTS}")
        return
    command = "python -m benchmarks.fault_attacks" + (f" --before {args.before}" if args.before else "") + f" --kills {args.kills}"
    lines = [
        "# Faults and attacks",
        "",
        f"`{command}` (each case a fresh process under a {MEMORY_LIMIT >> 30} GiB address-space cap and a "
        f"{TIMEOUT_S:.0f} s limit, in its own folder with TMPDIR there; load average before: {load[0]:.2f} on "
        f"{os.cpu_count()} CPUs; " + ("'before' is the earlier checkout, 'after' this one)." if args.before else "this checkout)."),
        "",
        "## Hostile checkpoints",
        "",
        "| case | command | " + " | ".join(f"{n}: outcome, s, peak RSS MB, note" for n in names) + " | " + " | ".join(f"{n}: last line" for n in names) + " |",
        "|---|---|" + "---|" * (2 * len(names)),
    ]
    for i, (case, cmd, _, _) in enumerate(runs[names[0]]["checkpoints"]):
        cells = []
        for n in names:
            _, _, r, note = runs[n]["checkpoints"][i]
            cells.append(f"{_outcome(r)}, {r['s']:.1f}, {r['rss_mb']:.0f}, {note}")
        tails = [runs[n]["checkpoints"][i][2]["last"].replace("|", "\\|") for n in names]
        lines.append(f"| {case} | {cmd} | " + " | ".join(cells) + " | " + " | ".join(tails) + " |")
    lines += ["", "## Stores and the tracking server", "", "| case | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += store_rows(runs, names, offsets).values()
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
