"""Markdown result files for the latency benchmarks: the command, the machine, then the figures."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from prunesearch.latency.runtime import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_AT_START = machine_info()["loadavg_1m"]


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).as_posix()), *sys.argv[1:]])


def machine_lines(timed: bool) -> list[str]:
    info = machine_info()
    lines = [
        f"- machine: {info['cpu']}, {info['cores']} cores ({info['machine']}), {info['system']}",
        f"- python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}",
        f"- 1-minute load average: {LOAD_AT_START} at the start, {info['loadavg_1m']} when written",
    ]
    if info.get("gpu"):
        lines.insert(2, "- GPU: " + ", ".join(f"{k} {v}" for k, v in info["gpu"].items()))
    if not timed:
        return lines[:2]
    if LOAD_AT_START > 0.5 * (info["cores"] or 1):  # before this script's own work
        lines.append("- **the machine was busy with other work when this started: elapsed-time figures are disturbed; "
                     "re-run this command on a quiet machine**")
    return lines


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write_result(name: str, title: str, body: list[str], timed: bool = True) -> Path:
    """Write ``benchmarks/results/NAME.md``: title, command, machine (and its load if ``timed``), then ``body``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    lines = [f"# {title}", "", "Command (from the repository root):", "", "```bash", command_line(), "```", "",
             *machine_lines(timed), "", *body, ""]
    path.write_text("\n".join(lines))
    return path
