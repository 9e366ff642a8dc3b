"""The device side of verification on this CPU: a 6-member front plus the teacher, on this machine and over SSH.

Exports six students and the teacher of a preset (random weights: latency does not depend on
them), then times them as the tracker runs them, ``--runs`` frames each at one intra-op thread,
first locally (:func:`prunesearch.verify.run_local`) and then through a real sshd on 127.0.0.1
(:func:`prunesearch.verify.run_ssh`, the test suite's server). Reports each run's wall time, the
figures side by side, the price the shipped table of that preset gives, and the table-vs-device
warnings; writes ``benchmarks/results/verify_device.md``.

    python -m benchmarks.verify_device                 # small preset, 200 runs
    python -m benchmarks.verify_device --runs 500
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from prunesearch.export import export_tracker
from prunesearch.latency.registry import load_table
from prunesearch.models.names import TEACHER, parse_student_name
from prunesearch.models.vit_tracker import StudentSpec, build_student, build_teacher, get_preset
from prunesearch.verify import Job, ModelGraphs, fact_warnings, run_local, run_ssh
from tests.support.ssh_server import SshServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FRONT = ("B2-1", "B3-1", "B4-2", "B6-3", "B8-4", "B9-3")
TABLES = {"small": "epyc-ort-fp32-1t-small", "vit-b": "epyc-ort-fp32-1t"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(TABLES))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    cfg, table = get_preset(args.preset), load_table(TABLES[args.preset])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        started = time.perf_counter()
        graphs = []
        for name in (*FRONT, TEACHER):
            numbers = parse_student_name(name)
            model = build_teacher(cfg) if numbers is None else build_student(cfg, StudentSpec(*numbers))
            export_tracker(model.eval(), Path(tmp) / name)
            graphs.append(ModelGraphs.from_dir(name, Path(tmp) / name))
        export_s = time.perf_counter() - started
        job = Job.from_meta(graphs, table.meta, runs=args.runs, warmup=args.warmup, python=sys.executable)

        started = time.perf_counter()
        local = run_local(job)
        local_s = time.perf_counter() - started
        server = SshServer.start()
        try:
            started = time.perf_counter()
            remote = run_ssh(server.host, job, **server.client())
            ssh_s = time.perf_counter() - started
        finally:
            server.stop()

    rows = []
    for a, b in zip(local.models, remote.models):
        numbers = parse_student_name(a.name)
        priced = (table.estimate_teacher() if numbers is None else table.estimate(*numbers)).per_frame_ms
        rows.append(f"| {a.name} | {priced:.3f} | {a.p50:.3f} | {a.p99:.3f} | {b.p50:.3f} | {b.p99:.3f} | "
                    f"{b.p50 / a.p50:.2f} | {a.template_ms:.3f} |")
    warnings = fact_warnings(local, table.meta) or ["(none)"]
    text = "\n".join([
        "# Verify, device side: a 6-member front plus the teacher on this CPU",
        "",
        f"`python -m benchmarks.verify_device --preset {args.preset} --runs {args.runs} --warmup {args.warmup}`",
        "",
        f"Device: {local.device['name']} ({local.device['cores']} cores, load {local.device['loadavg_1m']} at the start), "
        f"onnxruntime {local.device['onnxruntime']}, {job.provider}, {local.settings['threads_used']} thread(s), {job.precision}; "
        f"settings from table `{table.name}` (statistic {table.meta.get('statistic')}, clock {table.meta.get('clock', 'wall')}).",
        "",
        f"- export of the 7 models: {export_s:.1f} s (not part of verifying a logged front: its graphs are in the store)",
        f"- run_local: {local_s:.1f} s for 7 models x {args.runs} timed frames (+{args.warmup} warm-up)",
        f"- run_ssh through sshd on 127.0.0.1: {ssh_s:.1f} s (two connections, graphs copied, folder removed)",
        "",
        f"Per-frame ms (the runner's {job.clock} clock around crop upload, graph, outputs to the host); "
        "priced: the table's per-frame price.",
        "",
        "| model | priced | local p50 | local p99 | ssh p50 | ssh p99 | ssh/local p50 | template ms |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Warnings against the table's meta (local run):",
        "",
        *[f"- {line}" for line in warnings],
        "",
    ])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "verify_device.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
