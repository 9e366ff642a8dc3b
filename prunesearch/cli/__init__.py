"""Command-line interface: ``prunesearch <command>``. Each command group lives in its own module."""

from prunesearch.cli.main import main, run

__all__ = ["main", "run"]
