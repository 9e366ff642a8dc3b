import os
import subprocess
import sys

from prunesearch.processes import group_alive, pid_alive


def test_a_process_and_its_group_are_alive_until_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert pid_alive(child.pid) and group_alive(child.pid)
        assert pid_alive(os.getpid()) and group_alive(os.getpgid(0))
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid) and not group_alive(child.pid)
