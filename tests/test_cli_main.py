import pytest

from prunesearch.cli import main


@pytest.mark.parametrize(
    "argv",
    [["inspect", "--depth", "x"], [], ["no-such-command"], ["inspect", "--preset", "nope"]],
)
def test_bad_command_line_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "--help" in err[0]


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


def _commands(parser, path=()):
    """Every (sub)command parser with its path, e.g. ('latency', 'show')."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _commands(child, (*path, name))


def test_every_command_describes_itself_in_help():
    from prunesearch.cli.main import build_parser

    commands = dict(_commands(build_parser()))
    assert {("ui",), ("pareto",), ("profile",), ("latency", "show")} <= set(commands)
    assert [" ".join(path) for path, p in commands.items() if not p.description] == []


def test_a_closed_pipe_ends_quietly():
    import os
    import subprocess
    import sys

    # `prunesearch latency show --json | head`: the reader is gone before the command writes
    # its 20 KB, more than stdout buffers, so the write fails inside the command.
    child = subprocess.Popen(
        [sys.executable, "-m", "prunesearch", "latency", "show", "--target", "orin-nx", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
