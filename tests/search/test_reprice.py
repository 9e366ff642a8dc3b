"""Re-pricing what a search trained with a table it never used: prices from the table and each run's
recorded shape (never the run's own prices), accuracy from the runs, one line for a table of
another architecture, and no store made in a folder that was never searched."""

from __future__ import annotations

import json

import pytest

from prunesearch.cli.main import main
from prunesearch.latency import load_table
from prunesearch.models.phases import amortised
from prunesearch.search.mlflow_runs.read import read_results
from prunesearch.search.results import front_for
from prunesearch.search.verification import reprice
from tests.support.trained_store import RECORDED_MS, accuracy, write_trained_runs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
SMALL_TABLE = "epyc-ort-fp32-1t-small"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """100 trained candidates of the small architecture, priced (wrongly) on orin-nx; and 10 of another study
    trained with another teacher and the template re-encoded every 10 frames."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    write_trained_runs(uri, "synthetic", 100)
    write_trained_runs(uri, "synthetic", 10, study="study-b", teacher="other-teacher", template_update=10)
    return uri


def test_prices_come_from_the_table_and_the_recorded_shape(store):
    table = load_table(SMALL_TABLE)
    stored = read_results(store, "synthetic", study="study-a")
    rep = reprice(stored, table, "synthetic")
    assert len(rep.results) == 100 and rep.target == SMALL_TABLE and rep.architecture == "small"
    for r in rep.results:
        est = table.estimate(r.depth, r.ai_layers)
        assert r.latency_ms == {SMALL_TABLE: pytest.approx(est.per_frame_ms)} != {SMALL_TABLE: RECORDED_MS}
        assert r.template_ms[SMALL_TABLE] == pytest.approx(est.template_ms)
        assert r.ao == accuracy(r.depth, r.ai_layers, r.rule)  # accuracy from the run
    assert rep.line() == (f"re-priced with {SMALL_TABLE} (table sha {table.sha256[:12]}) from each candidate's recorded "
                          "depth and interaction layers; the search priced on orin-nx")


def test_template_schedule_of_the_runs_is_kept_and_fingerprints_must_agree(store):
    table = load_table(SMALL_TABLE)
    other = read_results(store, "synthetic", study="study-b")
    for r in reprice(other, table, "synthetic").results:
        est = table.estimate(r.depth, r.ai_layers)
        assert r.latency_ms[SMALL_TABLE] == pytest.approx(amortised(est.per_frame_ms, est.template_ms, 10))
    with pytest.raises(Exception, match=r"differ in teacher fingerprints and are not comparable; pick one study with "
                                        r"--study \(study-a, study-b\) or pass --allow-mixed"):
        reprice(read_results(store, "synthetic"), table, "synthetic")
    assert len(reprice(read_results(store, "synthetic"), table, "synthetic", allow_mixed=True).results) == 110


def test_pareto_with_an_unused_table_reprices_and_another_architecture_is_one_line(store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    table = load_table(SMALL_TABLE)
    assert main(["pareto", "--experiment", "synthetic", "--study", "study-a", "--target", SMALL_TABLE, "--budget", "3ms",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repriced"].startswith(f"re-priced with {SMALL_TABLE} (table sha {table.sha256[:12]})")
    rows = out["fronts"][SMALL_TABLE]
    expected = front_for(reprice(read_results(store, "synthetic", "study-a"), table, "synthetic").results, SMALL_TABLE, 3.0)
    assert [r["candidate"] for r in rows] == [r.key for r in expected] and len(rows) >= 3
    assert all(r["frame_ms"] <= 3.0 and r["frame_ms"] == pytest.approx(table.estimate(r["depth"], r["ai_layers"]).per_frame_ms)
               for r in rows)

    assert main(["pareto", "--experiment", "synthetic", "--study", "study-a", "--target", "2080ti"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latency table '2080ti' prices architecture vit-b; 'synthetic' searched small" in err
    assert main(["pareto", "--experiment", "synthetic", "--study", "study-a", "--target", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "no run of 'synthetic' was priced on 'nowhere'; priced on: orin-nx; and no latency table 'nowhere'" in err


def test_pareto_in_a_folder_never_searched_makes_no_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["pareto", "--experiment", "tiny", "--target", SMALL_TABLE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no MLflow store at" in err and "run `prunesearch run` in this folder first" in err
    assert list(tmp_path.iterdir()) == []
