"""On a shared machine, torch's OpenMP threads sleep while they wait instead of spinning: importing
prunesearch sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads OpenMP, unless the user set it
(why, and what it changes: benchmarks/results/shared_machine.md)."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_when_they_wait_unless_the_user_says_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import prunesearch, os, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [expected, "True"], done.stderr  # set, and torch (OpenMP) loaded after it
