"""Helpers shared by the tests and the benchmarks: fixtures that build files in upstream formats.

Imported as ``tests.support.NAME``: the repository root is on ``sys.path`` under pytest (pyproject's
``pythonpath``) and for ``python -m benchmarks.NAME`` run from the root. Nothing here ships in the
package.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root


def command_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m prunesearch`` command a benchmark runs: this repository's
    code ahead of whatever is installed, and an MLflow store of its own in ``folder``."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", PYTHONPATH=path, **extra)
