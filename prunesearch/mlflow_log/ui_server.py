"""The MLflow UI over a search's store: started on a checked port, ready before its URL is given,
and stopped with the command that started it.

``mlflow server`` is a process tree (the CLI, uvicorn, and by default a job runner with seven
huey consumers for GenAI features, about 3 GB on a small machine). It runs here in its own
process group with one web worker and job execution off, so stopping the group stops all of it
and nothing is left listening when ``prunesearch ui`` ends.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prunesearch.errors import InputError, PrunesearchError
from prunesearch.processes import group_alive

# MLflow 3's UI opens experiments in its GenAI mode; this query parameter selects model training.
WORKFLOW_QUERY = "workflowType=machine_learning"
READY_TIMEOUT_S = 120.0


NO_AUTH_NOTE = (
    "the MLflow UI on {host} has no authentication: anyone who can reach that address can read, change and delete "
    "every run; put a reverse proxy with authentication in front of it (and serve the UI on 127.0.0.1 behind it), "
    "or serve the store with `mlflow server --app-name basic-auth` instead"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(host: str, port: int, workers: int, allow_remote: bool) -> str | None:
    """Every option of ``prunesearch ui``, checked before the store is opened (a refused option
    creates nothing); returns the line to warn with when the UI will be reachable from other machines.

    An empty ``--host`` (every interface) is refused; another machine's reach (any address but a
    loopback one) needs ``allow_remote``, because the MLflow UI has no authentication.
    """
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if not host.strip():
        raise InputError("--host is empty, which would serve the store on every interface; give an address (default 127.0.0.1)")
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise InputError(
            f"--host {host} serves the store to other machines and the MLflow UI has no authentication (anyone who "
            "reaches it can change and delete runs); keep the default 127.0.0.1 (from elsewhere: ssh -L 5000:127.0.0.1:5000), "
            "or pass --allow-remote with authentication in front of it"
        )
    check_port(host, port)
    return NO_AUTH_NOTE.format(host=host) if remote else None


def check_port(host: str, port: int) -> int:
    """The port to serve on: ``port`` if it is free on ``host``, a free one if ``port`` is 0.

    Asked before the server starts, so a busy port is one line instead of a uvicorn traceback.
    """
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0 (any free port) or 1..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), port))
        except PermissionError:
            raise PrunesearchError(f"port {port} on {host} needs privileges; pass --port 1024 or above, or 0") from None
        except socket.gaierror as err:
            raise InputError(f"--host {host} is not an address of this machine ({err.strerror})") from None
        except OSError as err:
            raise PrunesearchError(f"port {port} on {host} is in use ({err.strerror}); pass --port N, or 0 for a free one") from None
        return probe.getsockname()[1]


def runs_url(base: str, experiment_id: str | None) -> str:
    """The runs table of an experiment in model-training mode (the store's home page without one)."""
    if experiment_id is None:
        return f"{base}/#/experiments?{WORKFLOW_QUERY}"
    return f"{base}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}"


@dataclass
class UiServer:
    """A running ``mlflow server``; ``log`` holds its output (shown when it fails to start)."""

    process: subprocess.Popen
    base_url: str
    log: Path

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no output"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the server answers ``/health``; one line if it dies or never answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrunesearchError(f"the MLflow server exited with code {self.process.returncode}: {self.last_line()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise PrunesearchError(f"the MLflow server did not answer on {self.base_url} within {timeout_s:.0f} s: {self.last_line()}")

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to what is left after 15 s."""
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None and not group_alive(self.process.pid):
                return
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and (self.process.poll() is None or group_alive(self.process.pid)):
                time.sleep(0.1)


@contextmanager
def serve(store_uri: str, host: str, port: int, workers: int = 1) -> Iterator[UiServer]:
    """Start ``mlflow server`` on ``store_uri`` and stop it (and its children) when the block ends
    (the options as :func:`check_options` allows them)."""
    port = check_port(host, port)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
        "--workers", str(workers), "--backend-store-uri", store_uri,
    ]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with tempfile.TemporaryDirectory(prefix="prunesearch-ui-") as tmp:
        log = Path(tmp) / "mlflow-server.log"
        with log.open("w") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        address = f"[{host.strip('[]')}]" if ":" in host else host
        server = UiServer(process, f"http://{address}:{port}", log)
        try:
            yield server
        finally:
            server.stop()
