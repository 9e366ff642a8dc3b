"""Helpers shared by the tests and the benchmarks: fixtures that build files in upstream formats.

Imported as ``tests.support.NAME``: the repository root is on ``sys.path`` under pytest (pyproject's
``pythonpath``) and for ``python -m benchmarks.NAME`` run from the root. Nothing here ships in the
package.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root
