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
import torch
from mlflow import MlflowClient

from prunesearch.checkpoints import save_checkpoint
from prunesearch.cli.main import main
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.latency import load_table
from prunesearch.models import build_teacher, get_preset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
EXPERIMENT = """
architecture: vit-b
space: {file: litetrack, depth: {min: 2, max: 4}, rules: [first, uniform]}
teacher: {checkpoint: teacher.pt}
data: {path: data, train_sequences: 3, val_sequences: 2}
finetune: {steps: 4, batch_size: 2, log_every: 2, warmup_steps: 1}
search: {trials: 4, seeds: [B3-1], early_stop: false}
seed: 0
"""
RUN = ["run", "--experiment", "tiny.yaml", "--target", "orin-nx", "--budget", "9ms"]
FITTING = {"B2-1/first", "B2-1/uniform", "B3-1/first", "B3-1/uniform"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Working folder with the experiment, its teacher and data, and a ready MLflow store."""
    root = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    save_checkpoint(build_teacher(get_preset("small")), root / "teacher.pt")
    params = SynthParams(min_frames=8, max_frames=10)
    for split, count in (("train", 3), ("val", 2)):
        generate(root / "data", count, seed=1, split=split, params=params)
    (root / "tiny.yaml").write_text(EXPERIMENT)
    MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root


def _env(folder):
    # One thread per process: on a busy 2-core machine more only makes torch spin.
    store = f"sqlite:///{folder / 'mlflow.db'}"
    return dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")


def _study(folder):
    storage = f"sqlite:///{folder / 'optuna.db'}"
    names = optuna.get_all_study_names(storage) if (folder / "optuna.db").exists() else []
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def _trained(study):
    return [t.user_attrs["candidate"] for t in study.get_trials() if t.user_attrs.get("outcome") == "trained"]


def test_run_kill_resume_with_two_workers_then_pareto(folder, capsys, monkeypatch):
    cmd = [sys.executable, "-m", "prunesearch", *RUN]
    first = subprocess.Popen(cmd, cwd=folder, env=_env(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        study = _study(folder)
        if study is not None and _trained(study):
            break
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 130, out
    done_before = _trained(_study(folder))
    assert 1 <= len(done_before) < 4

    second = subprocess.run([*cmd, "--workers", "2"], cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "strategy: enumerate" in second.stdout and "accuracy scale: small" in second.stdout
    study = _study(folder)
    trained = _trained(study)
    assert sorted(trained) == sorted(FITTING)  # each fitting candidate once: none repeated, none lost
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    workers = {t.user_attrs["worker"] for t in study.get_trials() if t.user_attrs.get("outcome") == "trained"}
    assert len(workers) >= 2

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    parents = client.search_runs([exp.experiment_id], "tags.kind = 'search'", order_by=["start_time ASC"])
    assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
    children = client.search_runs([exp.experiment_id], "tags.kind = 'candidate'")
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
        model = sorted(Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model"))
        if tags["pareto"] == "true":
            assert model[1:] == ["frame.onnx", "template.onnx"] and model[0].endswith(".pt")
        else:
            assert model == []

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    assert main(["pareto", "--experiment", "tiny", "--target", "orin-nx", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["accuracy_scale"] == "small"
    assert {r["candidate"] for r in listed["fronts"]["orin-nx"]} == {c.data.tags["candidate"] for c in front}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "jetson-9000", "--budget", "10ms"], r"unknown latency target 'jetson-9000'; known targets: 2080ti, .*orin-nx"),
        (["--target", "orin-nx", "--budget", "ten"], r"cannot read the budget 'ten'"),
        (["--target", "orin-nx", "--budget", "5ms"], r"no candidate of tiny fits 5ms .*the fastest, B2-1/first, takes 7.53 ms per frame on orin-nx"),
        (["--target", "orin-nx", "--budget", "9ms", "--data", "nowhere"], r"data folder .*nowhere \(--data\) does not exist"),
        (["--target", "orin-nx", "--budget", "9ms", "--teacher", "none.pt"], r"checkpoint .*none.pt \(--teacher\) does not exist"),
        (["--target", "orin-nx", "--budget", "9ms", "--storage", "postgresql://me:pw@db/x"], r"storage postgresql://me:\*\*\*@db/x( needs a database driver|: )"),
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
