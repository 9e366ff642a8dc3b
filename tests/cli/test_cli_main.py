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


INTERRUPTING = """
import argparse, atexit, importlib, sys

cli = importlib.import_module("prunesearch.cli.main")  # the module; `prunesearch.cli.main` is also the function

atexit.register(print, "shut down")
if sys.argv[1:] == ["exec-at-exit"]:
    atexit.register(exec, "pass")  # a string exec while shutting down


def interrupt(args):
    if sys.argv[1:] == ["exec"]:
        exec("raise KeyboardInterrupt", {})  # as when Ctrl-C lands in a dataclass built by a lazy import
    raise KeyboardInterrupt


class Parser:
    def parse_args(self, argv):
        return argparse.Namespace(func=interrupt)


cli.build_parser = Parser
cli.run()
"""


@pytest.mark.parametrize("where", ["plain", "exec", "exec-at-exit"])
def test_ctrl_c_ends_the_command_by_sigint_after_a_full_shutdown(tmp_path, where):
    """One line, no traceback, atexit handlers run, and a SIGINT death (so a calling shell script
    stops too) wherever the interrupt landed and whatever shutdown runs. CI saw -2 for a clean
    exit 130 (an interrupt that crossed a string exec under ``python -m``) and 1 for an unhandled
    KeyboardInterrupt (a string exec during shutdown cleared CPython's flag)."""
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "interrupting.py").write_text(INTERRUPTING)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]))
    done = subprocess.run([sys.executable, "-m", "interrupting", where], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (-signal.SIGINT, "prunesearch: interrupted\n", "shut down\n")
