"""End to end with the real parts, on a tiny configuration: run, kill, resume with two workers,
``prunesearch pareto``, what the MLflow store holds, and one clear line for bad input.

Tiny: a random small-preset teacher, a generated GOT-10k folder of short sequences, four
candidates that fit the budget (B2-1 and B3-1, rules first and uniform), four fine-tune steps.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from prunesearch.cli.main import main
from prunesearch.latency import load_table
from prunesearch.search.study.record import records
from tests.support.search_support import TINY_EXPERIMENT, TINY_FITTING, tiny_search_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
RUN = ["run", "--experiment", "tiny.yaml", "--target", "orin-nx", "--budget", "9ms"]
FITTING = TINY_FITTING
EXPERIMENT = TINY_EXPERIMENT % ""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Working folder with the experiment, its teacher and data, and a ready MLflow store."""
    root = tmp_path_factory.mktemp("e2e")
    tiny_search_folder(root, "tiny")
    MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root


def _model_files(model_uri):
    """Every file of a logged MLflow model, relative paths."""
    import mlflow

    root = Path(mlflow.artifacts.download_artifacts(model_uri))
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


def _env(folder):
    # One thread per process: on a busy 2-core machine more only makes torch spin.
    store = f"sqlite:///{folder / 'mlflow.db'}"
    return dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")


def _study(folder):
    """The run's study once it exists; opened under the same lock as the run creates the storage
    with (unlocked, the poll raced the run's migration: UNIQUE constraint failed: alembic_version)."""
    from prunesearch.sqlite_lock import creation_lock

    storage = f"sqlite:///{folder / 'optuna.db'}"
    if not (folder / "optuna.db").exists():
        return None
    with creation_lock(storage):
        names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def _trained(study):
    return [r.candidate for r in records(study) if r.outcome == "trained"]


def _spawned_workers(pid):
    """Pids of the worker processes ``pid`` spawned (multiprocessing's resource tracker is not one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _gone(pid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_run_kill_resume_with_two_workers_then_pareto(folder, capsys, monkeypatch):
    """kill -9 of a coordinator with a spawned worker, then a resume: nothing lost, nothing twice, nothing left RUNNING."""
    cmd = [sys.executable, "-m", "prunesearch", *RUN, "--workers", "2"]
    first = subprocess.Popen(cmd, cwd=folder, env=_env(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        study = _study(folder)
        spawned = _spawned_workers(first.pid)
        if study is not None and _trained(study) and spawned:
            break
        time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    out, _ = first.communicate(timeout=60)
    assert spawned and all(_gone(pid, 30) for pid in spawned), out  # the worker died with its coordinator
    study = _study(folder)
    done_before = _trained(study)
    assert 1 <= len(done_before) < 4

    second = subprocess.run(cmd, cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "strategy: enumerate" in second.stdout and "accuracy scale: small" in second.stdout
    study = _study(folder)
    trained = _trained(study)
    assert sorted(trained) == sorted(FITTING)  # each fitting candidate once: none repeated, none lost
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    parents = client.search_runs([exp.experiment_id], "tags.kind = 'search'", order_by=["start_time ASC"])
    assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
    note = parents[1].data.tags["mlflow.note.content"]
    assert "### Pareto front on orin-nx" in note and f"`{folder / 'runs'}" in note and ".stand-in |" in note
    every_child = client.search_runs([exp.experiment_id], "tags.kind = 'candidate'")
    assert {c.info.status for c in every_child} <= {"FINISHED", "KILLED"}  # none left RUNNING
    children = [c for c in every_child if c.info.status == "FINISHED"]
    assert sorted(c.data.tags["candidate"] for c in children) == sorted(FITTING)
    record = json.loads(Path(client.download_artifacts(parents[1].info.run_id, "reproducibility.json", str(folder))).read_text())
    assert record["latency_tables"] == {"orin-nx": load_table("orin-nx").sha256}
    assert {"seed", "git_commit", "packages", "data_fingerprint", "teacher_fingerprint", "device"} <= set(record)
    front = [c for c in children if c.data.tags["pareto"] == "true"]
    assert front
    for run in children:
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["accuracy_scale"] == "small" and tags["feasible.orin-nx"] == "true"
        assert 0 <= metrics["ao"] <= 1 and metrics["latency_ms.orin-nx"] <= 9.0
        assert len(client.get_metric_history(run.info.run_id, "finetune.loss")) == 2
        assert Path(tags["checkpoint"]).is_file() and metrics["ao_pct"] == pytest.approx(100 * metrics["ao"])
        if tags["pareto"] == "true":  # a registered MLflow model holding the ONNX pair and the checkpoint
            name = f"tiny.{tags['candidate'].replace('/', '-')}.stand-in"
            assert tags["registered_model"] == name and "not for deployment" in client.get_registered_model(name).description
            files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id)} | set(
                Path(p).name for p in _model_files(tags["model_uri"]))
            assert {"template.onnx", "frame.onnx", Path(tags["checkpoint"]).name} <= files
        else:
            assert "model_uri" not in tags

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    assert main(["pareto", "--experiment", "tiny", "--target", "orin-nx", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["accuracy_scale"] == "small"
    assert {r["candidate"] for r in listed["fronts"]["orin-nx"] if r["status"] == "front"} == {c.data.tags["candidate"] for c in front}


@pytest.mark.slow
def test_ctrl_c_with_two_workers_stops_cleanly_and_leaves_nothing_running(tmp_path):
    """Observed: a traceback from inside Optuna (UnboundLocalError) and a trial left RUNNING."""
    tiny_search_folder(tmp_path, "tiny")
    cmd = [sys.executable, "-m", "prunesearch", *RUN, "--workers", "2"]
    # A new session: Ctrl-C in a terminal signals the whole foreground group, workers included.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        study = _study(tmp_path)
        if study is not None and _spawned_workers(proc.pid) and any(r.holding and r.run_id for r in records(study)):
            break  # the coordinator is fine-tuning, its worker starting or fine-tuning too
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, out  # dies of the signal, as Python does: see cli.main.run
    assert "Traceback" not in out
    recs = records(_study(tmp_path))
    assert not [r for r in recs if r.state == optuna.trial.TrialState.RUNNING]
    assert [r.outcome for r in recs if r.claimed and r.outcome not in ("trained",)] and all(
        r.outcome in ("trained", "interrupted") for r in recs if r.claimed
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(r.info.status for r in runs if r.data.tags["kind"] == "search") == ["KILLED"]
    assert "RUNNING" not in {r.info.status for r in runs}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "jetson-9000", "--budget", "10ms"], r"unknown latency target 'jetson-9000'; known targets: 2080ti, .*orin-nx"),
        (["--target", "orin-nx", "--budget", "ten"], r"cannot read the budget 'ten'"),
        (["--target", "orin-nx", "--budget", "5ms"], r"no candidate of tiny fits 5ms .*the fastest, B2-1/first, takes 7.53 ms per frame on orin-nx"),
        (["--target", "orin-nx", "--budget", "9ms", "--data", "nowhere"], r"data folder .*nowhere \(--data\) does not exist"),
        (["--target", "orin-nx", "--budget", "9ms", "--teacher", "none.pt"], r"checkpoint .*none.pt \(--teacher\) does not exist"),
        (["--target", "orin-nx", "--budget", "9ms", "--storage", "postgresql://me:pw@db/x"], r"--storage postgresql://me:\*\*\*@db/x is shared but MLflow logs to the local store"),
        (["--target", "orin-nx", "--budget", "9ms", "--storage", "sqlite:////no/such/dir/x.db"], r"cannot open the study storage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(folder, monkeypatch, capsys, args, message):
    monkeypatch.chdir(folder)
    assert main(["run", "--experiment", "tiny.yaml", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_unknown_experiment_lists_the_known_ones(capsys):
    assert main(["run", "--experiment", "b5-b10", "--target", "orin-nx", "--budget", "10ms"]) == 2
    assert "unknown experiment 'b5-b10'; known experiments: b4-b9, quickstart" in capsys.readouterr().err


@pytest.mark.parametrize(
    "finetune, message",
    [
        ("{stepz: 3}", r"finetune.stepz: unknown key; allowed keys here: steps, batch_size"),
        ("{steps: many}", r"finetune.steps: expected a whole number >= 1 \(default \d+\), got 'many'"),
        ("{augment: {jitter: 2}}", r"finetune.augment.jitter: unknown key"),
    ],
)
def test_fine_tune_settings_are_checked_against_the_trainer(folder, monkeypatch, capsys, finetune, message):
    monkeypatch.chdir(folder)
    (folder / "bad.yaml").write_text(EXPERIMENT.replace("finetune: {steps: 4, batch_size: 2, log_every: 2, warmup_steps: 1}", f"finetune: {finetune}"))
    assert main(["run", "--experiment", "bad.yaml", "--target", "orin-nx", "--budget", "9ms"]) == 2
    assert re.search(r"bad.yaml: " + message, capsys.readouterr().err)
