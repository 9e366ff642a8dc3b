"""Every option of every command that takes a value refuses the empty string, by name.

``--published ""`` used to mean "not given" and ``--out ""`` the working folder; the CLI now puts
one rule on every free-text option (``cli/main.py``), and this test walks the whole parser so that
an option added later is checked too.
"""

from __future__ import annotations

import argparse

import pytest

from prunesearch.cli.main import build_parser, main


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _options(child, (*path, name))
        elif action.option_strings and action.nargs != 0 and action.default != "" and not isinstance(action, argparse._HelpAction):
            found.append((path, action.option_strings[-1]))
    return found


OPTIONS = _options(build_parser())


def test_the_walk_finds_the_options_that_take_paths_and_names():
    flat = {(" ".join(p), o) for p, o in OPTIONS}
    assert {("run", "--workdir"), ("latency derive", "--published"), ("export", "--out"), ("ui", "--host")} <= flat
    assert len(OPTIONS) > 100


@pytest.mark.parametrize(("command", "option"), OPTIONS, ids=[f"{' '.join(p)} {o}" for p, o in OPTIONS])
def test_an_empty_value_is_refused_naming_the_option(command, option, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*command, option, ""])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and f"argument {option}" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["inspect", "--checkpoint", "x" * 300],
    ["eval", "--checkpoint", "x" * 300, "--data", "nowhere"],
    ["latency", "show", "--target", "x" * 300],
    ["run", "--experiment", "x" * 300, "--target", "orin-nx", "--budget", "10ms"],
], ids=["inspect", "eval", "latency-show", "run"])
def test_a_path_the_system_refuses_is_one_line_wherever_it_is_opened(argv, capsys, tmp_path, monkeypatch):
    """ENAMETOOLONG, EACCES and the like on a path the user gave: theirs to fix, never a traceback."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prunesearch: error: ") and "Traceback" not in err, err
