"""Markdown result files for the latency benchmarks: the command, the machine, then the figures."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from prunesearch.latency.runtime import machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).as_posix()), *sys.argv[1:]])


def machine_lines() -> list[str]:
    info = machine_info()
    return [
        f"- machine: {info['cpu']}, {info['cores']} cores ({info['machine']}), {info['system']}",
        f"- python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}",
        f"- 1-minute load average when written: {info['loadavg_1m']}",
    ]


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write_result(name: str, title: str, body: list[str]) -> Path:
    """Write ``benchmarks/results/NAME.md``: title, command, machine, then ``body`` lines."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    lines = [f"# {title}", "", "Command (from the repository root):", "", "```bash", command_line(), "```", "",
             *machine_lines(), "", *body, ""]
    path.write_text("\n".join(lines))
    return path
