"""``prunesearch run`` with the real parts on the tiny experiment: a second search with another
budget or target trains nothing it already has, a workdir that cannot be written is refused before
anything is created, and a search whose every fine-tune failed exits non-zero in one line.
On the shipped teacher, the ``influence`` rule keeps the blocks ``first`` keeps: one student."""

import os
import re
import shutil
import subprocess
import sys

from tests.support import REPO

import optuna
import pytest
from mlflow import MlflowClient

from prunesearch.cli.main import main
from prunesearch.search.study.record import records
from tests.support.search_support import TINY_FITTING, tiny_search_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
TINY = ["run", "--experiment", "tiny.yaml"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    tiny_search_folder(tmp_path, "tiny")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def _studies(folder):
    storage = f"sqlite:///{folder / 'optuna.db'}"
    return {name: optuna.load_study(study_name=name, storage=storage) for name in optuna.get_all_study_names(storage)}


def _trained_here(study):
    """Candidates the study fine-tuned itself (not settled from another fine-tune)."""
    return sorted(r.candidate for r in records(study) if r.outcome == "trained" and not r.reused)


@pytest.mark.slow
def test_another_budget_or_target_trains_nothing_it_already_has(folder, capsys):
    assert main([*TINY, "--target", "orin-nx", "--budget", "9ms"]) == 0
    (first,) = _studies(folder).values()
    assert _trained_here(first) == sorted(TINY_FITTING)
    capsys.readouterr()

    # 9.5 ms on orin-nx, then 3 ms on another device: the same four candidates fit, nothing new.
    for target, budget in (("orin-nx", "9.5ms"), ("2080ti", "3ms")):
        assert main([*TINY, "--target", target, "--budget", budget]) == 0
        out = " ".join(capsys.readouterr().out.split())  # as one line: the console wraps at its width
        assert "4 candidates fit the budget, 4 distinct students, 4 of them fine-tuned by earlier searches; " \
               "0 already done, 0 to fine-tune" in out
        assert "reused 4 fine-tune(s) from earlier searches" in out
        (study,) = [s for name, s in _studies(folder).items() if f"/{budget}/" in name]
        assert _trained_here(study) == [] and sorted(r.candidate for r in records(study) if r.reused) == sorted(TINY_FITTING)
        assert {r.reused_from["study"] for r in records(study) if r.reused} == {first.study_name}

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    children = client.search_runs([exp.experiment_id], "tags.kind = 'candidate'")
    fine_tuned = [c for c in children if "reused_from" not in c.data.tags]
    reused = [c for c in children if "reused_from" in c.data.tags]
    assert len(fine_tuned) == 4 and len(reused) == 8 and {c.info.status for c in children} == {"FINISHED"}
    by_candidate = {c.data.tags["candidate"]: c for c in fine_tuned}
    for run in reused:
        source = by_candidate[run.data.tags["candidate"]]
        assert run.data.tags["reused_from"].startswith(f"{run.data.tags['candidate']}: trial ")
        assert source.info.run_id in run.data.tags["reused_from"]
        assert run.data.metrics["ao"] == source.data.metrics["ao"]
        assert run.data.tags["training_key"] == source.data.tags["training_key"]
        assert run.data.tags["checkpoint"] == source.data.tags["checkpoint"]
        assert not client.get_metric_history(run.info.run_id, "finetune.loss")  # no fine-tune of its own
    assert main(["pareto", "--experiment", "tiny", "--target", "2080ti", "--json"]) == 0


@pytest.mark.parametrize("workdir, why", [
    ("a-file", r"a-file is not a folder"),
    ("/dev/null", r"/dev/null is not a folder"),
    ("a-file/below", r"a-file is not a folder"),
])
def test_a_workdir_that_is_not_a_folder_is_refused_before_anything_is_created(folder, capsys, workdir, why):
    (folder / "a-file").write_text("not a folder")
    assert main([*TINY, "--target", "orin-nx", "--budget", "9ms", "--workdir", workdir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(rf"--workdir {re.escape(workdir)}: .*{why}", err), err
    assert not (folder / "optuna.db").exists() and not (folder / "mlflow.db").exists()


def test_a_read_only_workdir_is_refused_before_anything_is_created(folder):
    """As a user without root's permission override (CI runs as root: setpriv drops it)."""
    readonly = folder / "readonly"
    readonly.mkdir(mode=0o555)
    readonly.chmod(0o555)
    command = [sys.executable, "-m", "prunesearch", *TINY, "--target", "orin-nx", "--budget", "9ms", "--workdir", "readonly"]
    if os.geteuid() == 0:
        command = [shutil.which("setpriv") or "setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    # The cwd is the test's folder: the package is found from the repository.
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.fullmatch(r"prunesearch: error: --workdir readonly: cannot write in .*readonly \(read-only or not this "
                        r"user's\); give a writable folder\n", done.stderr), done.stderr
    assert not (folder / "optuna.db").exists() and not (folder / "mlflow.db").exists()


def test_a_search_whose_every_fine_tune_failed_exits_non_zero_in_one_line(folder, capsys, monkeypatch):
    from prunesearch.search.candidate import CandidateTrainer

    def broken(self, cand, on_step):  # noqa: ANN001, ANN202
        raise RuntimeError(f"cannot build {cand.key}")

    monkeypatch.setattr(CandidateTrainer, "run", broken)
    assert main([*TINY, "--target", "orin-nx", "--budget", "9ms"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(r"the search trained no candidate: every fine-tune failed or diverged \(4 candidates; "
                     r"B2-1/first: RuntimeError: cannot build B2-1/first\)", err), err
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.kind = 'search'")
    assert parent.info.status == "FAILED"


def test_on_the_shipped_teacher_influence_keeps_the_first_blocks_one_student_two_names(tmp_path):
    """The default run's B4-1/influence and B4-2/influence are B4-1/first and B4-2/first."""
    from prunesearch.search.setup import RunRequest, prepare
    from prunesearch.search.space import Candidate

    setup = prepare(RunRequest(("orin-nx",), "10ms", workdir=str(tmp_path)), f"sqlite:///{tmp_path / 'unused.db'}")
    trainer = setup.trainer()
    for split in ("B4-1", "B4-2"):
        assert trainer.blocks(Candidate.parse(f"{split}/influence")) == trainer.blocks(Candidate.parse(f"{split}/first"))
    assert trainer.blocks(Candidate.parse("B4-1/uniform")) != trainer.blocks(Candidate.parse("B4-1/first"))
    students = setup.students()
    feasible = [c.key for c in setup.book.feasible()]
    assert len(feasible) == 6 and len({students[k] for k in feasible}) == 4
    assert students["B4-1/influence"] == students["B4-1/first"] != students["B4-2/first"]
