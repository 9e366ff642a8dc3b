"""Command-line interface: ``prunesearch <command>``. Each command group lives in its own module."""

from prunesearch.cli.main import main

__all__ = ["main"]
