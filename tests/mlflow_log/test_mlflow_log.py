"""What a search leaves in the MLflow store, reading it back, and ``prunesearch pareto`` over it."""

import csv
import io
import json
import shutil
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from prunesearch.cli.main import main
from prunesearch.errors import PrunesearchError
from prunesearch.search.mlflow_runs.read import comparable, read_results, stopped_early
from prunesearch.mlflow_log.store import default_study_storage
from prunesearch.search.budget import parse_budget
from prunesearch.search.controller import plan_search
from prunesearch.search.front import trained_results
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.study.storage import redact
from prunesearch.search.results import front_for, fronts_and_ties
from tests.support.search_support import ScriptedTrainer, controller, make_book, search_info, settings

EXPERIMENT = "unit-search"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables made once (migrations take seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _store(empty_store, folder):
    shutil.copy(empty_store, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def searched(empty_store, tmp_path_factory):
    """One search (8 candidates, one diverging) logged to its own store, read by several tests."""
    folder = tmp_path_factory.mktemp("searched")
    uri = _store(empty_store, folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # MLflow puts artifacts in ./mlruns
        log, results, fronts = _search(uri, folder, diverge={"B3-1/uniform"})
    return SimpleNamespace(uri=uri, folder=folder, log=log, results=results, fronts=fronts)


def _search(uri, tmp_path, study="study-a", data="data-fp", budget="6ms", diverge=()):
    book = make_book(budget)
    log = SearchLog.start(uri, search_info(book, EXPERIMENT, study, data), book, "enumerate", {"git_commit": "abc", "seed": 0})
    search = settings(trials=8)
    ctl = controller(f"sqlite:///{tmp_path / (study + '.db')}", book, search, None, ScriptedTrainer(diverge=set(diverge)), log)
    ctl.plan = plan_search(ctl.study, book, search, ctl.students)
    ctl.work()
    results = trained_results(ctl.study, book, "small")
    fronts, ties = fronts_and_ties(results, book.targets, book.budget.ms)
    log.mark_front(results, fronts, ties)
    log.finish(fronts, results, {"seconds.total": 1.0}, {}, ties, {"fast": 13.0, "slow": 26.0}, "enumerate")
    return log, results, fronts


def test_parent_and_child_runs_hold_what_is_promised(searched, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched.uri)  # load_table searches through mlflow's global store
    log, fronts = searched.log, searched.fronts
    client = MlflowClient(searched.uri)
    parent = client.get_run(log.parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["strategy"] == "enumerate" and parent.data.tags["accuracy_scale"] == "small"
    assert parent.data.tags["latency_table.fast"] == "hash-fast" and parent.data.tags["data_fingerprint"] == "data-fp"
    assert parent.data.params["budget"] == "6ms" and parent.data.params["targets"] == "fast,slow"
    files = {a.path for a in client.list_artifacts(log.parent_id)} | {a.path for a in client.list_artifacts(log.parent_id, "front")}
    assert {"reproducibility.json", "pricing.csv", "front/fast.csv", "front/fast.json", "front/pareto_fast.png", "front/pareto_slow.png"} <= files
    # The evaluation-tables view: the front (with percent) and the pricing table.
    table = client.load_table(log.experiment_id, "front_fast.json", run_ids=[log.parent_id])
    assert [c for c, st in zip(table["candidate"], table["status"]) if st == "front"] == [r.key for r in fronts["fast"]]
    assert list(table["ao_pct"]) == pytest.approx([100 * a for a in table["ao"]])
    assert len(client.load_table(log.experiment_id, "pricing.json", run_ids=[log.parent_id])) == 32
    note = parent.data.tags["mlflow.note.content"]
    assert "budget **6ms**" in note and "strategy **enumerate**" in note and "accuracy scale: small" in note
    assert "Checkpoints: `" in note and f"| {fronts['fast'][0].key} | {100 * fronts['fast'][0].ao:.1f} |" in note
    assert parent.data.metrics["best_ao_pct.fast"] == pytest.approx(100 * max(r.ao for r in fronts["fast"]))
    assert parent.data.metrics["front_size.slow"] == 0 and "best_ao.slow" not in parent.data.metrics
    pricing = list(csv.DictReader(io.StringIO(client.download_artifacts(log.parent_id, "pricing.csv", str(tmp_path)) and open(tmp_path / "pricing.csv").read())))
    assert len(pricing) == 32 and {"frame_ms.fast", "fits.slow", "gmacs_per_frame", "params_m"} <= set(pricing[0])

    children = client.search_runs([log.experiment_id], f"tags.mlflow.parentRunId = '{log.parent_id}'")
    assert len(children) == 8
    by_key = {r.data.tags["candidate"]: r for r in children}
    failed = by_key.pop("B3-1/uniform")
    assert failed.info.status == "FAILED" and failed.data.tags["outcome"] == "diverged" and "ao" not in failed.data.metrics
    assert failed.data.tags["status"] == "diverged" and failed.info.run_name.endswith("[diverged]")
    front_keys = {r.key for r in fronts["fast"]}
    assert front_keys and fronts["slow"] == []
    for key, run in by_key.items():
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        assert {"depth", "ai_layers", "rule", "blocks", "targets", "budget", "teacher", "data", "seed", "finetune.steps"} <= set(p)
        assert {"ao", "sr50", "sr75", "auc", "latency_ms.fast", "fps.slow", "template_ms.fast", "gmacs_per_frame", "params_m"} <= set(m)
        assert m["ao_pct"] == pytest.approx(100 * m["ao"]) and t["status"] == "trained"
        assert t["feasible.fast"] == "true" and t["feasible.slow"] == "false" and t["accuracy_scale"] == "small"
        assert t["pareto"] == t["pareto.fast"] == str(key in front_keys).lower()
        assert len(client.get_metric_history(run.info.run_id, "finetune.loss")) == 12
        assert "config.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    front_json = json.loads(open(client.download_artifacts(log.parent_id, "front/fast.json", str(tmp_path))).read())
    front_rows = [row["candidate"] for row in front_json["front"] if row["status"] == "front"]
    assert front_rows == [r.key for r in fronts["fast"]]


def test_front_models_are_registered_once(searched, tmp_path):
    from tests.support.exported_graphs import TINY, tiny_teacher_graphs
    from prunesearch.checkpoints import save_checkpoint
    from prunesearch.mlflow_log.tracker_model import TrackerModel

    log, member = searched.log, searched.fronts["fast"][0]
    assert log.models([member]) == {}
    teacher, graphs = tiny_teacher_graphs()
    model = TrackerModel(EXPERIMENT, member.key, save_checkpoint(teacher, tmp_path / "model.pt"), graphs / "template.onnx",
                         graphs / "frame.onnx", TINY.template_size, TINY.search_size, stand_in=True, config={})
    uri = log.log_model(member.run_id, model)
    assert log.models([member]) == {member.key: model.registered_name}
    assert MlflowClient(searched.uri).get_run(member.run_id).data.tags["model_uri"] == uri


def test_an_early_stopped_candidate_says_why_in_its_run(empty_store, tmp_path, monkeypatch):
    from optuna.trial import TrialState

    from prunesearch.search.space import Candidate
    from prunesearch.search.study.record import TrialRecord

    monkeypatch.chdir(tmp_path)
    uri = _store(empty_store, tmp_path)
    book = make_book()
    log = SearchLog.start(uri, search_info(book, EXPERIMENT), book, "enumerate", {"git_commit": "abc", "seed": 0})
    cand = Candidate(4, 2, "uniform")
    run_id = log.begin(3, cand, "me")
    reason = "stopped at rung 6/12: loss 5 vs 0.25 of a no-slower peer"
    record = TrialRecord(3, TrialState.RUNNING, cand.key, outcome="early_stopped", message=reason, steps=6, rungs={6: 5.0})
    log.end(run_id, cand, record, "FINISHED")
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["status"] == "early-stopped" and run.data.tags["reason"] == reason
    assert run.info.run_name == "B4-2 uniform [early-stopped]" and reason in run.data.tags["mlflow.note.content"]
    assert [m.step for m in MlflowClient(uri).get_metric_history(run_id, "early_stop.rung_loss")] == [6]
    assert stopped_early(uri, EXPERIMENT) == ["B4-2/uniform"]


def test_reading_back_refuses_to_mix_fingerprints(empty_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = _store(empty_store, tmp_path)
    _, results, _ = _search(uri, tmp_path)
    stored = read_results(uri, EXPERIMENT)
    assert sorted(s.result.key for s in stored) == sorted(r.key for r in results)
    assert {r.key: r.ao for r in comparable(stored, "fast", False)} == {r.key: r.ao for r in results}
    _search(uri, tmp_path, study="study-b", data="other-data", budget="4ms")
    stored = read_results(uri, EXPERIMENT)
    with pytest.raises(PrunesearchError, match=r"differ in data fingerprints.*--study \(study-a, study-b\)"):
        comparable(stored, "fast", False)
    assert len(comparable(read_results(uri, EXPERIMENT, study="study-b"), "fast", False)) == 2
    assert len(comparable(stored, "fast", True)) == 8 + 2


def test_pareto_command_prints_table_json_csv_and_plot(searched, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched.uri)
    results = searched.results
    expected = [r.key for r in front_for(results, "fast")]
    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "fast", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    front_rows = [r["candidate"] for r in out["fronts"]["fast"] if r["status"] == "front"]
    assert out["accuracy_scale"] == "small" and front_rows == expected
    assert {"checkpoint", "model_uri", "run_id"} <= set(out["fronts"]["fast"][0])
    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "fast", "--json", "--all"]) == 0
    listed = json.loads(capsys.readouterr().out)["candidates"]["fast"]
    assert len(listed) == 7 and {r["candidate"] for r in listed if r["status"] == "front"} == set(expected)
    assert {r["status"] for r in listed} <= {"front", "tied", "dominated"}
    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "fast", "--csv", "--budget", "5.3ms"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["candidate"] for r in rows if r["status"] == "front"] == [r.key for r in front_for(results, "fast", 5.3)]
    assert rows[0]["accuracy_scale"] == "small"
    assert main(["pareto", "--experiment", EXPERIMENT, "--plot", str(tmp_path / "p.png")]) == 0
    table = capsys.readouterr().out
    assert "Pareto front on fast" in table and "accuracy scale: small" in table and expected[0] in table
    assert (tmp_path / "p_fast.png").stat().st_size > 1000 and (tmp_path / "p_slow.png").is_file()
    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "orin"]) == 2
    assert "no run of 'unit-search' was priced on 'orin'; priced on: fast, slow" in capsys.readouterr().err
    assert main(["pareto", "--experiment", "nothing-here"]) == 2
    assert "holds no experiment 'nothing-here'" in capsys.readouterr().err
    assert main(["pareto", "--experiment", EXPERIMENT, "--plot", str(tmp_path / "no" / "dir" / "p.png")]) == 2
    assert "folder" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_study_storage_sits_beside_the_store_and_passwords_are_hidden(tmp_path):
    assert default_study_storage(f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert redact("postgresql://me:secret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    assert redact("sqlite:///optuna.db") == "sqlite:///optuna.db"


def test_budget_text_is_kept_for_logs():
    assert parse_budget("100fps").text == "100fps"


def test_scores_carry_intervals_and_ties_are_marked(searched, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched.uri)
    client = MlflowClient(searched.uri)
    trained = {r.key: r for r in searched.results}
    run = client.get_run(trained["B4-2/first"].run_id)
    m = run.data.metrics
    assert m["ao_ci_low"] < m["ao"] < m["ao_ci_high"] and "auc_ci_high" in m
    assert run.data.tags["pareto.fast"] == "true" and run.data.tags["tied.fast"] == "false"
    assert client.get_run(trained["B4-2/uniform"].run_id).data.tags["tied.fast"] == "true"
    assert "sequences.json" in {a.path for a in client.list_artifacts(run.info.run_id)}

    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "fast", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["fronts"]["fast"]
    status = {r["candidate"]: r["status"] for r in rows}
    assert [k for k, s in status.items() if s == "front"] == [r.key for r in front_for(searched.results, "fast")]
    # 'uniform' is 0.01 below 'first' at the same price, within the sequences' noise: tied.
    assert {k for k, s in status.items() if s == "tied"} == {"B2-1/uniform", "B4-1/uniform", "B4-2/uniform"}
    assert all(r["ao_ci_low"] <= r["ao"] <= r["ao_ci_high"] for r in rows)

    assert main(["pareto", "--experiment", EXPERIMENT, "--target", "fast"]) == 0
    table = capsys.readouterr().out
    assert "~ B4-2/uniform" in table and "95% CI" in table


def test_pareto_compare_says_whether_one_candidate_is_better(searched, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched.uri)
    assert main(["pareto", "--experiment", EXPERIMENT, "--compare", "B4-2/first", "B4-2/uniform"]) == 0
    assert "are not told apart on 10 sequences" in capsys.readouterr().out
    assert main(["pareto", "--experiment", EXPERIMENT, "--compare", "B4-2/first", "B2-1/first", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["significant"] and verdict["difference"]["value"] == pytest.approx(0.12)
    assert main(["pareto", "--experiment", EXPERIMENT, "--compare", "B4-2/first", "B9-9/first"]) == 2
    assert "no fine-tuned candidate 'B9-9/first'" in capsys.readouterr().err
    assert main(["pareto", "--experiment", EXPERIMENT, "--level", "1.5"]) == 2
    assert "--level must lie strictly between 0 and 1" in capsys.readouterr().err


def test_run_and_pareto_build_one_result_alike_and_carry_the_training_key(searched):
    """The end of `run` (study and price book) and `pareto` (the child runs) go through one layout."""
    from tests.support.search_support import TRAINING

    stored = {s.result.key: s for s in read_results(searched.uri, EXPERIMENT, "study-a")}
    assert sorted(stored) == sorted(r.key for r in searched.results)
    for r in searched.results:
        assert stored[r.key].result.to_dict() == r.to_dict()
        assert stored[r.key].training_key == TRAINING.key(tuple(r.blocks), r.depth, r.ai_layers)
    # The scripted trainer keeps each rule's own blocks: another rule or split, another student, another key
    # (one student under two rule names: tests/search/test_search_reuse.py).
    assert stored["B4-1/first"].training_key != stored["B4-1/uniform"].training_key != stored["B4-2/first"].training_key


def test_quoted_names_are_found_and_names_mlflow_cannot_hold_are_refused_up_front(empty_store, tmp_path):
    from prunesearch.errors import InputError
    from prunesearch.mlflow_log.store import MAX_EXPERIMENT_NAME, check_experiment_name
    from prunesearch.mlflow_log.writer import MlflowWriter

    writer = MlflowWriter(_store(empty_store, tmp_path))
    exp_id = writer.experiment("o'x")
    run_id = writer.create_run(exp_id, "parent", {"study": "o'x study", "kind": "search"})
    writer.create_run(exp_id, "other", {"study": "o x study", "kind": "search"})
    assert [r.run_id for r in writer.open_runs(exp_id, {"study": "o'x study", "kind": "search"})] == [run_id]
    for bad, why in (("...", "starts with '..'"), ("a/b", "holds '/' or ':'"), ("a:b", "holds '/' or ':'"),
                     ("a'b\"c", "holds both"), ("x" * (MAX_EXPERIMENT_NAME + 1), "longer than"), ("", "is empty")):
        with pytest.raises(InputError, match=why):
            writer.experiment(bad)
    assert check_experiment_name("tiny-search.v2 (o'x)") == "tiny-search.v2 (o'x)"
    assert MlflowClient(tracking_uri=writer.uri).get_experiment_by_name("...") is None
