"""The fuzzing battery: every bad input of tests/bad_inputs.py is one error line through the CLI.

Each case runs ``prunesearch.cli.main`` in its own working folder, with the MLflow store and the
built-in data cache pointed inside it, and must exit non-zero with exactly one line on stderr,
no traceback (no exception escaping ``main``), nothing on stdout and no file left behind.
"""

from __future__ import annotations

import re

import pytest
from bad_inputs import CASES, materialize, snapshot

from prunesearch.cli import main


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys, one_torch_thread):
    folder = tmp_path / "case"
    argv = materialize(case, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(folder / "cache"))
    before = snapshot(folder)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), f"accepted silently: {out[-300:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {err[-600:]}"
    assert re.search(case.expect, lines[0]), lines[0]
    assert len(lines[0]) <= 600
    assert out == ""
    assert snapshot(folder) == before, f"left behind: {sorted(snapshot(folder) - before)}"
