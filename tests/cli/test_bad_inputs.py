"""The fuzzing battery: every bad input of tests/support/bad_inputs.py is one error line through the CLI.

Each case runs ``prunesearch.cli.main`` in its own working folder, with the MLflow store and the
built-in data cache pointed inside it, and must exit non-zero with exactly one line on stderr,
no traceback (no exception escaping ``main``), nothing on stdout and no file left behind.
"""

from __future__ import annotations

import re

import pytest
from tests.support.bad_inputs import CASES, materialize, one_line_error


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys, one_torch_thread):
    folder = tmp_path / "case"
    line = one_line_error(materialize(case, folder), folder, monkeypatch, capsys)
    assert re.search(case.expect, line), line
