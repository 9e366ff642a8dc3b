"""A real OpenSSH server for the tests, on 127.0.0.1 at a free port, with throwaway keys.

Everything lives in one temporary folder: a host key, a client key in ``authorized_keys``, a
second client key that is not (for "key refused"), the client's known_hosts, and ``tmp/``, the
folder the device side makes its temporary folders in (so a test can see that nothing is left).
The server runs ``sshd -D`` as this user; as root it allows key-only root logins (and makes sshd's
/run/sshd if missing, as the system's service would).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start as root without it (its service unit makes it)


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "prunesearch-test", "-f", str(path)], check=True)
    return path


@dataclass
class SshServer:
    root: Path
    port: int
    proc: subprocess.Popen
    key: Path
    other_key: Path

    @classmethod
    def available(cls) -> bool:
        return Path(SSHD).is_file() and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None

    @classmethod
    def start(cls) -> "SshServer":
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="prunesearch-sshd-"))
        (root / "tmp").mkdir()
        host_key, key, other = _keygen(root / "host_key"), _keygen(root / "client_key"), _keygen(root / "other_key")
        (root / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        port = free_port()
        (root / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPermitRootLogin prohibit-password\nStrictModes no\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "MaxStartups 50\nLogLevel ERROR\n"
        )
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=subprocess.DEVNULL,
                                stderr=open(root / "sshd.log", "wb"))
        server = cls(root, port, proc, key, other)
        server.wait()
        return server

    @property
    def host(self) -> str:
        return f"{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}"

    @property
    def tmp(self) -> Path:
        """Where the device side makes its temporary folders (``remote_tmp``)."""
        return self.root / "tmp"

    def client(self, key: Path | None = None) -> dict:
        """``run_ssh`` keyword arguments for a client that trusts this server on first sight and uses only ``key``."""
        return {
            "identity": key or self.key,
            "options": (f"UserKnownHostsFile={self.root / 'known_hosts'}", "StrictHostKeyChecking=accept-new",
                        "IdentitiesOnly=yes", "IdentityAgent=none", "LogLevel=ERROR"),
            "remote_tmp": str(self.tmp),
        }

    def wait(self, timeout: float = 20) -> None:
        import socket

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.root / 'sshd.log').read_text()[-2000:]}")

    def sessions(self) -> list[int]:
        """The sshd processes serving connections now (the listener's descendants named sshd)."""
        children: dict[int, list[int]] = {}
        names: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            names[int(entry.name)] = name
            children.setdefault(int(rest[1]), []).append(int(entry.name))
        found, todo = [], list(children.get(self.proc.pid, []))
        while todo:
            pid = todo.pop()
            if names.get(pid, "").startswith("sshd"):
                found.append(pid)
                todo.extend(children.get(pid, []))
        return found

    def cut(self) -> int:
        """Kill every session's sshd (not the listener): the connections drop as if the network went."""
        pids = self.sessions()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
