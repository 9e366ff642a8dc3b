"""Running the device runner: on this machine, or on a device over the user's own OpenSSH client.

Over SSH nothing is installed on the device. Two connections, each the plain ``ssh`` binary with the
user's host string, so ``~/.ssh/config`` aliases, keys, the agent and ProxyJump work as they do by hand:

1. *prepare*: checks the device's python (``--version``: a python too old to parse the runner never
   runs it), makes a private folder (``mktemp -d``: mode 700) and unpacks the runner, the job and
   the graphs into it from a tar stream on stdin; if unpacking fails the folder is removed there.
2. *run*: runs the runner in that folder from a shell whose exit trap removes the folder, whatever
   ends it. A cut connection ends it too: a watcher reads the connection's stdin, which this side
   keeps open and never writes, and on its end (the connection is gone) kills the runner.

Should the run connection fail, a third connection removes the folder. ``BatchMode=yes`` and a
connect timeout mean ssh never prompts for a password or hangs on a host that does not answer.
Every failure is one :class:`~prunesearch.errors.DeviceError` line saying what to fix.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prunesearch.errors import DeviceError, InputError
from prunesearch.fields import clip
from prunesearch.verify import device_runner
from prunesearch.verify.job import Job
from prunesearch.verify.report import DeviceReport, last_line, parse_output

RUNNER = Path(device_runner.__file__)
FOLDER_PREFIX = "prunesearch-verify."
# An exit status of ssh itself (it cannot be told from a remote command's 255, which the runner never uses).
SSH_FAILED = 255
_MIN = ".".join(map(str, device_runner.MIN_PYTHON))


@dataclass(frozen=True)
class SshTarget:
    """``[user@]HOST[:PORT]`` as the user wrote it: ``destination`` goes to ssh as is, ``port`` as ``-p``."""

    destination: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> "SshTarget":
        """``device``, ``me@jetson``, ``me@10.0.0.7:2222``, ``[fe80::1]:22``; an ssh-config alias works as HOST."""
        text = text.strip()
        if not text or text.startswith("-") or any(c.isspace() for c in text):
            raise InputError(f"--host must be [user@]HOST[:PORT] (a name from ~/.ssh/config works as HOST), got {text!r}")
        user, _, rest = text.rpartition("@")
        port = None
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\w*))?", rest)
        if bracketed:
            rest, port = bracketed.group(1), bracketed.group(2)
        elif rest.count(":") == 1:
            rest, port = rest.split(":")
        if not rest or (port is not None and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise InputError(f"--host {text!r}: expected [user@]HOST[:PORT] with a port from 1 to 65535")
        return cls(f"{user}@{rest}" if user else rest, int(port) if port else None)

    def __str__(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")

    def by_hand(self, tool: str = "ssh") -> str:
        """The command that reaches it by hand (``ssh -p 2222 me@jetson``), for error messages."""
        return f"{tool} {f'-p {self.port} ' if self.port else ''}{self.destination}"


def run_local(job: Job, timeout_s: float | None = None) -> DeviceReport:
    """Time ``job`` on this machine: the runner as a subprocess of this python (or ``job.python`` in a shell)."""
    job.check_files()
    runner = Path(job.runner or RUNNER)
    with tempfile.TemporaryDirectory(prefix="prunesearch-verify-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job.document([(str(Path(m.template).resolve()), str(Path(m.frame).resolve()))
                                                     for m in job.models])))
        if job.python is None:
            command = [sys.executable, str(runner), str(job_file)]
        else:
            command = ["sh", "-c", f'{job.python} "$0" "$1"', str(runner), str(job_file)]
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"the runner took over {timeout_s:g} s on this machine; nothing was recorded: "
                              "time fewer runs or models") from None
        except OSError as err:
            raise DeviceError(f"cannot start {command[0]} on this machine: {err.strerror or err}") from None
    return parse_output(done.stdout, "this machine", job.python or sys.executable, done.returncode, done.stderr)


def run_ssh(
    host: str,
    job: Job,
    *,
    identity: str | Path | None = None,
    options: Sequence[str] = (),
    connect_timeout: int = 10,
    remote_tmp: str | None = None,
    timeout_s: float | None = None,
) -> DeviceReport:
    """Time ``job`` on ``host`` (``[user@]HOST[:PORT]``) over ssh; the device's temporary folder is always removed.

    ``identity`` is a key file (``-i``), ``options`` extra ``-o KEY=VALUE`` settings (after
    ``BatchMode=yes``, which they cannot undo), ``remote_tmp`` the device folder to make the
    temporary folder in (default its ``$TMPDIR`` or /tmp), ``timeout_s`` a limit on the run.
    """
    job.check_files()
    if shutil.which("ssh") is None:
        raise DeviceError("no OpenSSH client (ssh) on this machine: install it (apt-get install openssh-client)")
    ssh = Ssh(SshTarget.parse(host), identity, tuple(options), connect_timeout)
    python = job.python or "python3"
    folder = None
    try:
        folder = ssh.prepare(job, python, remote_tmp)
        out, err, rc = ssh.call(_run_script(folder, python), timeout_s=timeout_s)
        if rc == SSH_FAILED and not out.strip():
            raise DeviceError(f"the connection to {ssh.target} was cut while the runner ran ({last_line(err) or 'no message'}); "
                              "nothing was recorded: check the network and the device (rebooted? out of memory?) and run again")
        folder = None  # the run's shell exited, and its trap removed the folder
        return parse_output(out, str(ssh.target), python, rc, err)
    finally:
        if folder is not None:
            ssh.remove(folder)


class Ssh:
    """One device reached with the user's ssh: the command line, and the three remote steps."""

    def __init__(self, target: SshTarget, identity: str | Path | None, options: tuple[str, ...], connect_timeout: int) -> None:
        self.target = target
        cmd = ["ssh", "-o", "BatchMode=yes"]
        for option in options:
            cmd += ["-o", option]
        cmd += ["-o", f"ConnectTimeout={connect_timeout}", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if target.port:
            cmd += ["-p", str(target.port)]
        if identity:
            cmd += ["-i", str(identity)]
        self.command = [*cmd, "--", target.destination]

    def call(self, script: str, stdin_writer=None, timeout_s: float | None = None) -> tuple[str, str, int]:  # noqa: ANN001
        """Run ``script`` in ``sh`` on the device; ``stdin_writer(pipe)`` feeds stdin, else it stays open until the end.

        Stdin held open is what the run's watcher reads: it ends only when this side is done or the
        connection is gone. ``timeout_s`` ends the connection (and so the remote run) after that long.
        """
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([*self.command, "sh -c " + shlex.quote(script)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err)
            stopped = threading.Event()

            def stop() -> None:
                stopped.set()
                proc.kill()

            timer = threading.Timer(timeout_s, stop) if timeout_s else None
            try:
                if timer:
                    timer.start()
                if stdin_writer is not None:
                    try:
                        stdin_writer(proc.stdin)
                        proc.stdin.close()
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the device stopped reading (a check failed there): its output says why
                out = proc.stdout.read()
                rc = proc.wait()
            finally:
                if timer:
                    timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    try:
                        pipe.close()
                    except BrokenPipeError:
                        pass
            if stopped.is_set():
                raise DeviceError(f"the run on {self.target} took over {timeout_s:g} s and was stopped; nothing was recorded: "
                                  "time fewer runs or models")
            err.seek(0)
            return out.decode(errors="replace"), err.read().decode(errors="replace"), rc

    def prepare(self, job: Job, python: str, remote_tmp: str | None) -> str:
        """Check the device's python, make the private folder and unpack runner, job and graphs; its path."""
        graphs = [(f"m{i}/template.onnx", f"m{i}/frame.onnx") for i in range(len(job.models))]
        files = {"runner.py": Path(job.runner or RUNNER), "job.json": json.dumps(job.document(graphs)).encode()}
        for model, (template, frame) in zip(job.models, graphs):
            files[template], files[frame] = Path(model.template), Path(model.frame)
        out, err, rc = self.call(_prepare_script(python, remote_tmp), stdin_writer=lambda pipe: _write_tar(pipe, files))
        probe = re.search(r"^python (\d+) ?(.*)$", out, re.M)
        if probe is None:
            raise self.failure(err, rc)
        status, version = int(probe.group(1)), probe.group(2).strip()
        where = f"{python} on {self.target}"
        if status == 127 or (status != 0 and "not found" in version):
            raise DeviceError(f"no {python} on {self.target} ({clip(version or 'not found')}): install python3 >= {_MIN} with "
                              "numpy and onnxruntime there, or give the path of one")
        if status != 0:
            raise DeviceError(f"`{python} --version` fails on {self.target} ({clip(version)}): give a working python3 >= {_MIN}")
        numbers = re.match(r"Python (\d+)\.(\d+)", version)
        if numbers is None or (int(numbers.group(1)), int(numbers.group(2))) < device_runner.MIN_PYTHON:
            raise DeviceError(f"{where} is {clip(version) or 'of unknown version'}; the runner needs python >= {_MIN}: "
                              "install a newer python3 there (with numpy and onnxruntime)")
        folder = re.search(r"^folder (/.*)$", out, re.M)
        if folder is None:
            raise DeviceError(f"cannot unpack the graphs into a temporary folder on {self.target} "
                              f"({last_line(err) or f'exit status {rc}'}): check the free space of its temporary folder")
        return folder.group(1)

    def failure(self, err: str, rc: int) -> DeviceError:
        """ssh's own failure, as what to fix."""
        line = last_line(err) or f"ssh exit status {rc}"
        if "Permission denied" in line or "Too many authentication failures" in line:
            return DeviceError(f"{self.target} refused the login ({clip(line)}): verify logs in with keys only (no password "
                               f"prompt); install your key on the device ({self.target.by_hand('ssh-copy-id')}) or add it to ssh-agent")
        if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            return DeviceError(f"the host key of {self.target} is unknown or has changed ({clip(line)}): XX, or fix its known_hosts entry")
        return DeviceError(f"cannot reach {self.target} over ssh ({clip(line)}): check the host name and port, that the "
                           f"device is on and its sshd runs (try `{self.target.by_hand()}` by hand)")

    def remove(self, folder: str) -> None:
        """Best effort: remove the job's folder (only a folder this module made) after a failed run.

        It never raises: the run's own error is the one to report. (Where the device cannot be
        reached any more, the watcher there ends the runner and the shell's trap removes the folder.)
        """
        if FOLDER_PREFIX in Path(folder).name:
            try:
                self.call(f"rm -rf -- {shlex.quote(folder)}", stdin_writer=lambda pipe: None, timeout_s=60)
            except (DeviceError, OSError):
                pass


def _prepare_script(python: str, remote_tmp: str | None) -> str:
    tmp = f"TMPDIR={shlex.quote(remote_tmp)}; export TMPDIR; " if remote_tmp else ""
    return (
        f"umask 077; {tmp}"
        f'v=$({python} --version 2>&1); s=$?; v=$(printf "%s\\n" "$v" | head -n 1); echo "python $s $v"; '
        '[ "$s" -eq 0 ] || exit 0; '
        f'case "$v" in "Python 3."[89]*|"Python 3."[1-9][0-9]*) ;; *) exit 0;; esac; '
        f'd=$(mktemp -d "${{TMPDIR:-/tmp}}/{FOLDER_PREFIX}XXXXXXXX") || exit 3; '
        "trap 'rm -rf \"$d\"' EXIT HUP INT TERM; "
        'tar -xof - -C "$d" || exit 4; '
        "trap - EXIT HUP INT TERM; "
        'echo "folder $d"'
    )


def _run_script(folder: str, python: str) -> str:
    # The runner's stdin is /dev/null; the watcher gets the connection's stdin as fd 3 (an
    # asynchronous command's own stdin would be /dev/null) and kills the runner when it ends.
    return (
        f"d={shlex.quote(folder)}; pid=; watch=; "
        'cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$watch" ] && kill "$watch" 2>/dev/null; rm -rf "$d"; }; '
        "trap cleanup EXIT; trap 'exit 129' HUP INT TERM PIPE; "
        'cd "$d" || exit 3; exec 3<&0; '
        f"{python} runner.py job.json </dev/null & pid=$!; "
        '( cat <&3 >/dev/null 2>&1; kill "$pid" 2>/dev/null ) >/dev/null 2>&1 & watch=$!; '
        "exec 3<&-; "
        'wait "$pid"; s=$?; pid=; exit $s'
    )


def _write_tar(pipe, files: dict[str, Path | bytes]) -> None:  # noqa: ANN001 - a binary pipe
    """Stream ``files`` (name -> local path or content) as a plain ustar archive, owner-private modes."""
    now = time.time()
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, source in files.items():
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o600, now
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with source.open("rb") as f:
                    tar.addfile(info, f)
