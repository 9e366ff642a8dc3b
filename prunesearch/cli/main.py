"""Entry point: builds the parser from the command modules and turns user errors into one line.

Each command module exposes ``register(subparsers)``, which adds its commands and sets ``func``
on them. Heavy libraries are imported inside the command functions so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prunesearch import __version__
from prunesearch.cli import eval_commands, model_commands, search_commands
from prunesearch.errors import PrunesearchError

COMMAND_MODULES = (model_commands, eval_commands, search_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunesearch",
        description="Hardware-aware layer-pruning search for transformer visual trackers.",
    )
    parser.add_argument("--version", action="version", version=f"prunesearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PrunesearchError as err:
        print(f"prunesearch: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunesearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
