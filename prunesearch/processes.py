"""Whether a process or a process group still exists, from the operating system alone.

Signal 0 delivers nothing but runs the kernel's checks: ESRCH (``ProcessLookupError``) means no
such process or group, EPERM (``PermissionError``) means it exists but belongs to another user,
so it counts as alive.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def _exists(send: Callable[[int, int], None], target: int) -> bool:
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie not yet reaped still does)."""
    return _exists(os.kill, pid)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` exists."""
    return _exists(os.killpg, pgid)
