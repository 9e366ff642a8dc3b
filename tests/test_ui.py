"""``prunesearch ui``: bad ports are one line, the printed URL opens the runs table in a real
headless Chromium, and SIGTERM leaves nothing listening or running."""

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from prunesearch.cli.main import main
from prunesearch.mlflow_log.store import EXPERIMENT_TAGS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
CHROMIUM = shutil.which("chromium")
# The flags a sandboxed, offline root session needs (background networking would be refused).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=20000",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with one search: a parent run and a child candidate, written before the tag existed."""
    root = tmp_path_factory.mktemp("ui")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.create_experiment("tiny-search", tags={"prunesearch": "search"})
    parent = client.create_run(exp, run_name="search tiny-search")
    child = client.create_run(exp, run_name="B2-1/first", tags={"mlflow.parentRunId": parent.info.run_id})
    client.log_metric(child.info.run_id, "ao", 0.5)
    for run in (child, parent):
        client.set_terminated(run.info.run_id)
    return root, exp


def _env(root):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", PYTHONPATH=os.getcwd())


def test_invalid_and_busy_ports_are_one_line(store, capsys, monkeypatch):
    root, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    for port in ("-1", "70000"):
        assert main(["ui", "--port", port, "--no-browser"]) == 2
        err = capsys.readouterr().err.strip()
        assert "--port must be 0 (any free port) or 1..65535" in err and len(err.splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["ui", "--port", str(busy.getsockname()[1]), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is in use" in err and "--port N, or 0 for a free one" in err and len(err.splitlines()) == 1
    assert main(["ui", "--experiment", "nope", "--no-browser"]) == 2
    assert "has no experiment 'nope'" in capsys.readouterr().err


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_ui_serves_the_runs_table_and_stops_on_sigterm(store, tmp_path):
    root, exp = store
    ui = subprocess.Popen(
        [sys.executable, "-m", "prunesearch", "ui", "--port", "0", "--no-browser"],
        cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = ui.stdout.readline().strip()
        assert line.startswith("MLflow UI: http://127.0.0.1:"), (line, ui.stderr.read() if ui.poll() is not None else "")
        url = line.split(": ", 1)[1]
        port = int(url.split(":")[2].split("/")[0])
        assert port != 0 and url.endswith(f"/#/experiments/{exp}/runs?workflowType=machine_learning")
        assert _listening(port)
        # ui itself, the server and its web worker: the check below sees all of them.
        assert len(_processes_using(root / "mlflow.db")) >= 3
        # The experiment was marked a model-development one, so MLflow 3 does not open it as GenAI.
        tags = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").get_experiment(exp).tags
        assert all(tags.get(k) == v for k, v in EXPERIMENT_TAGS.items())

        if CHROMIUM is None:
            pytest.skip("headless Chromium is not installed (apt-get install chromium); the browser check needs it")
        dom = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        ).stdout
        # The runs table with the search's parent run, not the GenAI traces overview.
        assert "Run Name" in dom and "matching runs" in dom and "search tiny-search" in dom
        assert "Tokens" not in dom
    finally:
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(timeout=60)
    assert code == 128 + signal.SIGTERM
    assert not _listening(port), "the MLflow server still listens after prunesearch ui got SIGTERM"
    assert not _processes_using(root / "mlflow.db"), "a process of the MLflow server outlived prunesearch ui"


def _processes_using(path) -> list[str]:
    """Running processes whose command line or environment names ``path``: the server has it on its
    command line, its uvicorn workers get the store through the environment."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = b"".join(open(f"/proc/{pid}/{part}", "rb").read() for part in ("cmdline", "environ"))
        except OSError:
            continue
        if str(path).encode() in text and int(pid) != os.getpid():
            found.append(pid)
    return found
