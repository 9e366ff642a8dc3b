"""Entry point: builds the parser from the command modules and turns user errors into one line.

Each command module exposes ``register(subparsers)``, which adds its commands and sets ``func``
on them. Heavy libraries are imported inside the command functions so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from prunesearch._version import __version__
from prunesearch.cli import data_commands, eval_commands, latency_commands, model_commands, search_commands, verify_commands
from prunesearch.cli.args import nonempty
from prunesearch.errors import PrunesearchError, PrunesearchWarning
from prunesearch.fields import clip
from prunesearch.outputs import os_reason

COMMAND_MODULES = (model_commands, data_commands, eval_commands, latency_commands, search_commands, verify_commands)
MAX_LINE = 600  # an error line longer than this is cut: it is read, not scrolled
INTERRUPTED = 130  # what main() returns after Ctrl-C: the code shells show for it


def one_line(message: str) -> str:
    """``message`` as a single line of readable length."""
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (what was wrong, where to look), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="prunesearch",
        description="Hardware-aware layer-pruning search for transformer visual trackers.",
    )
    parser.add_argument("--version", action="version", version=f"prunesearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    _describe(parser)
    _refuse_empty(parser)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *rest: object, **kw: object) -> None:
    if issubclass(category, PrunesearchWarning):
        print(f"prunesearch: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _default_show_warning(message, category, *rest, **kw)  # type: ignore[arg-type]


_default_show_warning = warnings.showwarning


def _describe(parser: argparse.ArgumentParser) -> None:
    """A (sub)command registered with only a ``help`` line gets it as its ``--help`` description too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if child.description is None:
                    child.description = helps.get(name)
                _describe(child)


def _refuse_empty(parser: argparse.ArgumentParser) -> None:
    """Every option that takes free text (a path, a name, a URL) refuses ``""``, which commands would
    otherwise read as "not given" (the default) or as the working folder: one rule for all of them,
    so a new option cannot forget it. Options with a ``type`` or ``choices`` check their own values;
    one whose default is ``""`` (an empty list, as ``--baselines``) takes ``""`` to mean its default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _refuse_empty(child)
        elif action.option_strings and action.nargs != 0 and action.type is None and action.choices is None \
                and action.default != "":
            action.type = nonempty


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except PrunesearchError as err:
        print(f"prunesearch: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunesearch: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`prunesearch pareto --json | head`): stop quietly, as `cat` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        if err.filename is None:
            raise
        # The system refused a path the user gave (a name too long, a folder without permission, a
        # file gone): theirs to fix, in one line, wherever in the command it was opened.
        print(f"prunesearch: error: cannot use {clip(str(err.filename))}: {os_reason(err)}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``prunesearch`` command, as installed and as ``python -m prunesearch``.

    After Ctrl-C the process dies of SIGINT, after the one line, its threads and its exit handlers,
    instead of exiting 130: a calling shell script then stops too (bash reads a child's exit 130
    as "it handled the signal" and goes on). It sends the signal itself rather than leave an
    unhandled KeyboardInterrupt to CPython, whose "die of SIGINT" flag is set by any interrupt
    that crossed a string ``exec`` (a dataclass built during a lazy import) and cleared by any
    string ``exec`` during shutdown: both happened in CI, giving -2 for a clean exit and 1 for this one.
    """
    code = main()
    if code != INTERRUPTED:
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what interpreter shutdown would run (multiprocessing joins its children)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    run()
