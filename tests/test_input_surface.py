"""A fast subset of the input-surface battery (tests/input_surface.py), in-process: one case per class of
bad value on a few surfaces of each kind (numbers, paths read, paths written, file contents).

Each must exit non-zero with one line on stderr, nothing on stdout and nothing left behind. The whole
table runs as real processes under memory and time limits in ``benchmarks/bad_input_battery.py --surface``;
unreadable and read-only paths only there, since this process may be root.
"""

from __future__ import annotations

import signal

import pytest
from input_surface import cases, materialize, snapshot

from prunesearch.cli import main

FAST = [c for c in cases() if c.fast and not c.unprivileged]
SECONDS = 20  # a case that reads a FIFO or /dev/zero would never end: fail it instead


def _timeout(signum, frame):  # noqa: ARG001 - the signal handler's signature
    raise TimeoutError(f"still running after {SECONDS} s")


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_bad_value_is_one_line_and_leaves_nothing(case, tmp_path, monkeypatch, capsys, one_torch_thread):
    folder = tmp_path / "case"
    argv = materialize(case, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(folder / "cache"))
    before = snapshot(folder)
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SECONDS)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), f"accepted silently: {out[-300:]}"
    assert len(lines) == 1 and "Traceback" not in err, f"{len(lines)} lines on stderr: {err[-600:]}"
    assert len(lines[0]) <= 600
    assert out == ""
    assert snapshot(folder) == before, f"left behind: {sorted(snapshot(folder) - before)}"


def test_every_surface_meets_every_class_that_applies_to_it():
    """The table is a cross: a new flag or file kind gets every class of bad value."""
    names = {c.name for c in cases()}
    assert {"synth.sequences/huge", "eval.data/fifo", "export.out/read_only", "derive.name/outside"} <= names
    assert len(names) == len(cases()), "two cases share a name"
