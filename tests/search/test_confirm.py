"""The confirmation stage and several seeds per candidate: which candidates are confirmed, why a
brief front member falls off, the continued fine-tune (weights and step count carried), seeds
averaged, and a real run killed during its confirmation and resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch
from mlflow import MlflowClient

from prunesearch.checkpoints import load_tracker, save_checkpoint
from prunesearch.cli.main import main
from prunesearch.data.synthetic import SynthParams, builtin_sequences
from prunesearch.evaluation.uncertainty import SequenceStats
from prunesearch.models import build_teacher, get_preset
from prunesearch.pruning import student_from_teacher
from prunesearch.search import confirm, identity
from prunesearch.search.candidate import CandidateTrainer, ConfirmTrainer, checkpoint_path
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate
from prunesearch.search.study.record import SKIPPED, records
from prunesearch.training import FinetuneConfig
from tests.support.search_support import tiny_search_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


def _result(key, ao, ms):
    return CandidateResult(key, 4, 1, "first", {"ao": ao}, {"t": ms}, {"t": 1.0}, 10.0, 1.0, 1.0, "small")


def test_members_are_each_targets_front_then_its_ties_once():
    a, b, c, d = (_result(k, 0.6, 5.0) for k in "abcd")
    assert confirm.members({"x": [a, b], "y": [b]}, {"x": [c], "y": [d, a]}) == ["a", "b", "c", "d"]


def test_a_dropped_member_says_what_beat_it_or_why_it_has_no_result():
    brief = [_result("fast", 0.60, 5.0), _result("mid", 0.64, 7.0), _result("slow", 0.66, 9.0), _result("lost", 0.67, 9.5)]
    confirmed = [_result("fast", 0.61, 5.0), _result("mid", 0.58, 7.0), _result("slow", 0.66, 9.0)]
    front = [confirmed[0], confirmed[2]]
    why = confirm.dropped(brief, front, confirmed, "t", {"lost": "RuntimeError: out of memory"})
    assert set(why) == {"mid", "lost"}
    assert why["mid"] == "AO 64.0 -> 58.0; fast is as fast or faster (5.00 <= 7.00 ms) at AO 61.0"
    assert why["lost"] == "confirmation failed: RuntimeError: out of memory"


def test_confirmation_study_keeps_the_brief_stage_and_changes_with_its_settings():
    from prunesearch.search.experiment import ConfirmSettings

    one = identity.confirm_study_name("exp/t/9ms/abc", ConfirmSettings(20, 8, 1), "fp")
    assert one.startswith("exp/t/9ms/abc/confirm/")
    assert one == identity.confirm_study_name("exp/t/9ms/abc", ConfirmSettings(20, 8, 1), "fp")
    assert one != identity.confirm_study_name("exp/t/9ms/abc", ConfirmSettings(20, 8, 2), "fp")
    assert one != identity.confirm_study_name("exp/t/9ms/abc", ConfirmSettings(20, 8, 1), "other sequences")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A random small teacher and a few short built-in-style sequences (generated, cached: in a
    cache of this module's own unless PRUNESEARCH_CACHE is set, and only while this module runs)."""
    with pytest.MonkeyPatch.context() as env:
        if "PRUNESEARCH_CACHE" not in os.environ:
            env.setenv("PRUNESEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        torch.manual_seed(0)
        teacher = build_teacher(get_preset("small")).eval()
        params = SynthParams(min_frames=8, max_frames=10)
        yield teacher, builtin_sequences("train", count=3, params=params), builtin_sequences("val", count=2, params=params)


CONFIG = FinetuneConfig(steps=2, batch_size=2, log_every=1, warmup_steps=1, device="cpu")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_seeds_are_averaged_and_kept_for_the_interval(parts, tmp_path):
    teacher, train, val = parts
    config = FinetuneConfig(**{**CONFIG.__dict__, "seeds": 2})
    trainer = CandidateTrainer(teacher, train, val, config, tmp_path)
    steps = []
    outcome = trainer.run(Candidate(2, 1), lambda step, m: steps.append(step) or False)
    assert trainer.steps == 4 and steps == [1, 2, 3, 4]  # both seeds' steps, in a row
    stats = SequenceStats.from_dict(outcome.sequences)
    assert stats.seeds == 2 and len(stats.names) == 2
    per_seed = stats.iou_sum.sum(axis=1) / stats.frames.sum(axis=1)
    assert outcome.accuracy["ao"] == pytest.approx(per_seed.mean())
    assert per_seed[0] != per_seed[1]  # the seeds differ, so the interval sees seed noise
    key = Candidate(2, 1).key
    assert outcome.checkpoint == str(checkpoint_path(tmp_path, key)) and checkpoint_path(tmp_path, key, seed=1).is_file()
    assert [load_tracker(checkpoint_path(tmp_path, key, seed=k)).extra["seed"] for k in (0, 1)] == [0, 1]


def test_confirmation_continues_from_the_brief_checkpoint(parts, tmp_path):
    teacher, train, val = parts
    cand = Candidate(2, 1)
    brief = student_from_teacher(teacher, 2, 1, "first")
    with torch.no_grad():
        for p in brief.parameters():
            p.add_(0.01)  # not the teacher's pruned weights: a restart would not start from these
    path = save_checkpoint(brief, checkpoint_path(tmp_path, cand.key), steps=200)
    trainer = ConfirmTrainer({cand.key: str(path)}, 1, teacher, train, val, FinetuneConfig(**{**CONFIG.__dict__, "steps": 3}), tmp_path)

    model, before = trainer.start(cand, 0)
    assert before == 200
    assert all(torch.equal(a, b) for a, b in zip(_state(model).values(), _state(brief).values()))
    assert trainer.seed_of(0) == CONFIG.seed + 1  # fresh pairs: not the brief fine-tune's seed

    outcome = trainer.run(cand, lambda step, m: False)
    saved = checkpoint_path(tmp_path, cand.key, "confirm")
    assert outcome.checkpoint == str(saved) and outcome.status == "ok"
    extra = load_tracker(saved).extra
    assert extra["steps"] == 203 and extra["stage"] == "confirm"
    from prunesearch.checkpoints import load_checkpoint

    after = _state(load_checkpoint(saved))
    assert any(not torch.equal(after[k], v) for k, v in _state(brief).items())  # it trained on


def test_a_missing_brief_checkpoint_is_one_line_naming_it(parts, tmp_path):
    teacher, train, val = parts
    gone = tmp_path / "elsewhere" / "B2-1-first.pt"
    trainer = ConfirmTrainer({"B2-1/first": str(gone)}, 1, teacher, train, val, CONFIG, tmp_path)
    with pytest.raises(Exception, match=r"brief checkpoint .*B2-1-first.pt of B2-1/first is not on this machine"):
        trainer.start(Candidate(2, 1), 0)


def _env(folder):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")


def _confirm_study(folder):
    from prunesearch.sqlite_lock import creation_lock

    storage = f"sqlite:///{folder / 'optuna.db'}"
    if not (folder / "optuna.db").exists():
        return None
    with creation_lock(storage):
        names = [n for n in optuna.get_all_study_names(storage) if "/confirm/" in n]
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


@pytest.mark.slow
def test_a_search_killed_during_its_confirmation_resumes_it(tmp_path, monkeypatch, capsys):
    """kill -9 while a confirmation fine-tune runs; the same command again confirms every member
    once, and ``pareto`` shows the confirmed front unless asked for the brief one."""
    experiment = tiny_search_folder(tmp_path, "tiny")
    # Slow enough per candidate (12 steps x 2 seeds) to be caught in the middle of one.
    experiment.write_text(experiment.read_text().replace("confirm: false", "confirm: {steps: 12, val_sequences: 2, seeds: 2}"))
    cmd = [sys.executable, "-m", "prunesearch", "run", "--experiment", "tiny.yaml", "--target", "orin-nx", "--budget", "9ms"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        study = _confirm_study(tmp_path)
        if study is not None and any(r.holding and r.run_id for r in records(study)):
            break
        time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    out, _ = first.communicate(timeout=60)
    study = _confirm_study(tmp_path)
    assert study is not None and any(r.holding for r in records(study)), out

    # Resumed by two workers sharing the confirmation.
    second = subprocess.run([*cmd, "--workers", "2"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                            timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Confirmed Pareto front" in second.stdout
    study = _confirm_study(tmp_path)
    trained = [r.candidate for r in records(study) if r.outcome == "trained"]
    # Every member was enqueued; a worker that lost the race for the last queued one asked the
    # sampler instead, and its proposal (no member) was recorded as a costless skip.
    members = {r.candidate for r in records(study) if r.candidate and r.outcome not in SKIPPED}
    assert sorted(trained) == sorted(members) and len(members) >= 1  # each member once: none repeated, none lost
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert all(r.steps == 24 for r in records(study) if r.outcome == "trained")

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny").experiment_id
    confirmed = client.search_runs([exp], "tags.stage = 'confirm' AND tags.outcome = 'trained'")
    assert sorted(r.data.tags["candidate"] for r in confirmed) == sorted(members)
    assert all(r.data.params["confirm.steps"] == "12" and r.data.params["confirm.seeds"] == "2" for r in confirmed)
    assert {r.info.status for r in client.search_runs([exp], "tags.kind = 'candidate'")} <= {"FINISHED", "KILLED"}
    parent = client.search_runs([exp], "tags.kind = 'search' AND attributes.status = 'FINISHED'")[0]
    assert parent.data.tags["front_stage"] == "confirm" and "**Confirmed front**" in parent.data.tags["mlflow.note.content"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    monkeypatch.chdir(tmp_path)

    def pareto(*extra):  # in this process: the command line is the same, without a second start-up
        capsys.readouterr()
        assert main(["pareto", "--experiment", "tiny", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    shown, brief = pareto(), pareto("--stage", "brief")
    assert shown["stage"] == "confirm" and brief["stage"] == "brief" and "dropped" in shown
    assert {r["run_id"] for r in shown["fronts"]["orin-nx"]} <= {r.info.run_id for r in confirmed}
    assert not {r["run_id"] for r in brief["fronts"]["orin-nx"]} & {r.info.run_id for r in confirmed}
    assert np.isfinite([r["ao_ci_low"] for r in shown["fronts"]["orin-nx"]]).all()
