"""``prunesearch ui`` over the store of a tiny search: bad ports are one line; the printed URL opens
the runs table in a real headless Chromium, the parent run shows the search's description, the front
is an MLflow table and its member a registered model; SIGTERM leaves nothing listening or running."""

import os
import shutil
import signal
import socket
import subprocess
import sys

from pathlib import Path
from types import SimpleNamespace

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
    """The store of a tiny search, as ``prunesearch run`` logs it (scripted fine-tunes, the real
    SearchLog), with one front member registered as an MLflow model from real ONNX graphs."""
    from tests.support.exported_graphs import TINY, tiny_teacher_graphs
    from prunesearch.checkpoints import save_checkpoint
    from prunesearch.mlflow_log.tracker_model import TrackerModel
    from prunesearch.search.controller import plan_search
    from prunesearch.search.results import fronts_and_ties
    from prunesearch.search.front import trained_results
    from prunesearch.search.mlflow_runs.log import SearchLog
    from tests.support.search_support import ScriptedTrainer, controller, make_book, search_info, settings

    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow puts artifacts in ./mlruns
        book = make_book("6ms")
        log = SearchLog.start(uri, search_info(book, "tiny-search"), book, "enumerate", {"git_commit": "abc", "seed": 0})
        search = settings(trials=5)
        ctl = controller(f"sqlite:///{root / 'optuna.db'}", book, search, None, ScriptedTrainer(diverge={"B3-1/uniform"}), log)
        ctl.plan = plan_search(ctl.study, book, search, ctl.students)
        ctl.work()
        results = trained_results(ctl.study, book, "small")
        fronts, ties = fronts_and_ties(results, book.targets, book.budget.ms)
        log.mark_front(results, fronts, ties)
        member = fronts["fast"][0]
        teacher, graphs = tiny_teacher_graphs()
        model = TrackerModel("tiny-search", member.key, save_checkpoint(teacher, root / "member.pt"), graphs / "template.onnx",
                             graphs / "frame.onnx", TINY.template_size, TINY.search_size, stand_in=True, config={})
        log.log_model(member.run_id, model)
        log.finish(fronts, results, {"seconds.total": 1.0}, {}, ties, {"fast": 13.0, "slow": 26.0}, "enumerate")
    return SimpleNamespace(root=root, exp=log.experiment_id, parent=log.parent_id, front=fronts["fast"], model=model)


def _env(root):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", PYTHONPATH=os.getcwd())


def test_invalid_and_busy_ports_are_one_line(store, capsys, monkeypatch):
    root = store.root
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


def _browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran, as headless Chromium sees it; a PNG too when asked."""
    shot = [f"--screenshot={screenshot}", "--window-size=1400,900"] if screenshot else []
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *shot, "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    ).stdout


@pytest.mark.servers
def test_ui_serves_the_runs_table_and_stops_on_sigterm(store, tmp_path, monkeypatch):
    """Also writes what a reviewer sees: PRUNESEARCH_SCREENSHOTS=docs/screenshots keeps the PNGs."""
    root, exp = store.root, store.exp
    shots = Path(os.environ.get("PRUNESEARCH_SCREENSHOTS", tmp_path))
    ui = subprocess.Popen(
        [sys.executable, "-m", "prunesearch", "ui", "--port", "0", "--no-browser"],
        cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = ui.stdout.readline().strip()
        assert line.startswith("MLflow UI: http://127.0.0.1:"), (line, ui.stderr.read() if ui.poll() is not None else "")
        url = line.split(": ", 1)[1]
        port = int(url.split(":")[2].split("/")[0])
        # It lands on the latest search's parent run (front, plots and verification one glance away).
        assert port != 0 and url.endswith(f"/#/experiments/{exp}/runs/{store.parent}?workflowType=machine_learning")
        assert _listening(port)
        # ui itself, the server and its web worker: the check below sees all of them.
        assert len(_processes_using(root / "mlflow.db")) >= 3
        client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        # The experiment was marked a model-development one, so MLflow 3 does not open it as GenAI.
        tags = client.get_experiment(exp).tags
        assert all(tags.get(k) == v for k, v in EXPERIMENT_TAGS.items())
        # The front and the pricing table are MLflow tables (the evaluation-tables view), the
        # front member a registered model.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")  # load_table reads the global store
        table = client.load_table(exp, "front_fast.json", run_ids=[store.parent])
        assert [c for c, st in zip(table["candidate"], table["status"]) if st == "front"] == [r.key for r in store.front]
        assert client.get_registered_model(store.model.registered_name).latest_versions

        if CHROMIUM is None:
            pytest.skip("headless Chromium is not installed (apt-get install chromium); the browser check needs it")
        shots.mkdir(parents=True, exist_ok=True)
        base, mode = url.split("#")[0], url.split("?")[1]
        dom = _browse(f"{base}#/experiments/{exp}/runs?{mode}", tmp_path / "chromium", shots / "runs_view.png")
        # The runs table with the search's parent run, not the GenAI traces overview.
        assert "Run Name" in dom and "matching runs" in dom and "tiny-search fast+slow 6ms" in dom
        assert "Tokens" not in dom
        page = _browse(url, tmp_path / "chromium", shots / "parent_run.png")
        # The description: the front as a table, the accuracy scale, where the checkpoints are.
        assert "Pareto front on fast" in page and "accuracy scale: small" in page and "Checkpoints" in page
        model_page = _browse(f"{base}#/models/{store.model.registered_name}?{mode}", tmp_path / "chromium",
                             shots / "registered_model.png")
        assert store.model.registered_name in model_page and "not for deployment" in model_page
        assert (shots / "runs_view.png").stat().st_size > 10_000
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


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "myhost.example"])  # "": tests/cli/test_empty_values.py
def test_a_host_other_machines_reach_is_refused_without_allow_remote(tmp_path, capsys, monkeypatch, host):
    """Refused before anything starts or is created: no server, no store, no lock file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["ui", "--host", host, "--port", "0", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--host" in err
    assert ("is empty" in err) if not host else ("--allow-remote" in err and "no authentication" in err)
    assert list(tmp_path.iterdir()) == []


def test_allow_remote_names_the_missing_authentication_and_what_to_put_in_front():
    from prunesearch.mlflow_log.ui_server import check_options

    assert check_options("127.0.0.1", 0, 1, allow_remote=False) is None
    assert check_options("localhost", 0, 1, allow_remote=False) is None
    note = check_options("0.0.0.0", 0, 1, allow_remote=True)
    assert "has no authentication" in note and "reverse proxy" in note and "--app-name basic-auth" in note
    assert "\n" not in note


def test_ui_without_a_store_creates_none(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["ui", "--port", "0", "--no-browser"]) == 2
    assert "there is no MLflow store at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
