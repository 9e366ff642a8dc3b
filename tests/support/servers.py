"""Real servers for the tests, on 127.0.0.1: a PostgreSQL (the shared Optuna storage) and an MLflow
tracking server (the shared ``MLFLOW_TRACKING_URI``), each with throwaway data.

Both start in the background as soon as a selected test needs them (see ``conftest.py``), so their
start-up (MLflow migrates its store: ~20 s on a busy machine) overlaps the tests that run first.
PostgreSQL runs as the ``postgres`` user when the tests run as root (it refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


@dataclass
class Postgres:
    """A PostgreSQL server with trust authentication; ``database()`` makes a fresh database."""

    bin: Path
    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @classmethod
    def launch(cls) -> "Postgres | None":
        bindir = _postgres_bin()
        if bindir is None:
            return None
        root = Path(tempfile.mkdtemp(prefix="prunesearch-pg-"))
        server = cls(bindir, root, free_port())
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        server._as_owner([str(bindir / "initdb"), "-D", str(root / "data"), "--auth=trust", "-U", "postgres", "--no-sync"],
                         check=True, capture_output=True)
        server.proc = subprocess.Popen(
            server._owner_prefix() + [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(server.port),
                                      "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                      "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"),
        )
        return server

    def _owner_prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _as_owner(self, cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        return subprocess.run(self._owner_prefix() + cmd, **kw)  # type: ignore[call-overload]

    def wait(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}")

    def database(self, name: str) -> str:
        self.wait()
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name], check=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class MlflowServer:
    """``mlflow server`` with its own SQLite backend store and proxied artifact root.

    ``halt`` stops the server and keeps its store; ``launch(root, port)`` serves that store again at
    the same URI (a tracking server that went down and came back).
    """

    root: Path
    port: int
    proc: subprocess.Popen

    @classmethod
    def launch(cls, root: Path | None = None, port: int | None = None) -> "MlflowServer":
        root = root or Path(tempfile.mkdtemp(prefix="prunesearch-mlflow-"))
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
            cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "ab"),
            # No GenAI job runner: seven more processes the tests never use.
            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        )
        return cls(root, port, proc)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not start: {(self.root / 'server.log').read_text()[-2000:]}")

    def halt(self) -> None:
        """Stop serving and wait until the port refuses connections (its uvicorn child may outlive it
        briefly); the store stays."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"mlflow server on port {self.port} still answers after it was stopped")

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
