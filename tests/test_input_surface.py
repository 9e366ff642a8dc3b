"""A fast subset of the input-surface battery (tests/input_surface.py), in-process: one case per class of
bad value on a few surfaces of each kind (numbers, paths read, paths written, file contents).

Each must exit non-zero with one line on stderr, nothing on stdout and nothing left behind. The whole
table runs as real processes under memory and time limits in ``benchmarks/bad_input_battery.py --surface``;
unreadable and read-only paths only there, since this process may be root.
"""

from __future__ import annotations

import pytest
from bad_inputs import one_line_error
from input_surface import cases, materialize

FAST = [c for c in cases() if c.fast and not c.unprivileged]


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_bad_value_is_one_line_and_leaves_nothing(case, tmp_path, monkeypatch, capsys, one_torch_thread):
    folder = tmp_path / "case"
    assert one_line_error(materialize(case, folder), folder, monkeypatch, capsys).startswith("prunesearch")


def test_every_surface_meets_every_class_that_applies_to_it():
    """The table is a cross: a new flag or file kind gets every class of bad value."""
    names = {c.name for c in cases()}
    assert {"synth.sequences/huge", "eval.data/fifo", "export.out/read_only", "derive.name/outside"} <= names
    assert len(names) == len(cases()), "two cases share a name"
