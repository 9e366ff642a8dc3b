"""Where prunesearch keeps things on this machine when the user names no place: the one home of
default folders, so an environment variable that moves them moves all of them.

``PRUNESEARCH_CACHE`` moves the cache (built-in synthetic data, TensorRT engines); the default is
``~/.cache/prunesearch``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PRUNESEARCH_CACHE"


def cache_root() -> Path:
    """``$PRUNESEARCH_CACHE``, or ``~/.cache/prunesearch``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "prunesearch")


def cache_dir(kind: str) -> Path:
    """The cache folder of one kind of thing (``synthetic``, ``tensorrt-engines``); not created here."""
    return cache_root() / kind
