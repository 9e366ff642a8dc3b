"""What the search pays: the template schedule priced into objective and budget, and the latency
tables' hashes as part of the study's identity."""

import shutil
from pathlib import Path

import pytest
import torch

from prunesearch.checkpoints import save_checkpoint
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.errors import PrunesearchError
from prunesearch.latency import load_table
from prunesearch.models import build_teacher, get_preset
from prunesearch.search.controller import plan_search
from prunesearch.search.pricing import LatencyTablePricer, Price, template_policy
from prunesearch.search.setup import RunRequest, prepare
from prunesearch.search.space import Candidate
from prunesearch.search.front import trained_results
from tests.support.search_support import ScriptedTrainer, controller, make_book, settings


def test_price_amortises_the_template_only_when_updated():
    assert Price(4.0, 3.0).priced_ms == 4.0
    assert Price(4.0, 3.0, 10).priced_ms == pytest.approx(4.3)
    assert Price(4.0, 3.0, 10).fps == pytest.approx(1000 / 4.3)
    assert "once per sequence" in template_policy(None) and "every 10 frames" in template_policy(10)


def test_template_update_enters_the_budget_check():
    cand = Candidate(4, 1)  # fast: 5.2 ms per frame, template 1.2 ms
    assert make_book("5.3ms").fits(cand, "fast")
    every_5 = make_book("5.3ms", template_update=5)
    assert every_5.prices[cand.key]["fast"].priced_ms == pytest.approx(5.2 + 1.2 / 5)
    assert not every_5.fits(cand, "fast") and every_5.margin_ms(cand) == pytest.approx(5.44 - 5.3)
    with pytest.raises(PrunesearchError, match="every 1 frames"):
        make_book("1ms", template_update=1).require_feasible("tiny")


def test_template_update_is_the_searched_objective(tmp_path):
    book = make_book("6ms", template_update=2)
    ctl = controller(f"sqlite:///{tmp_path / 'optuna.db'}", book, settings(trials=4), None, ScriptedTrainer())
    ctl.plan = plan_search(ctl.study, book, settings(trials=4), ctl.students)
    ctl.work()
    results = trained_results(ctl.study, book, "small")
    assert results
    for r in results:
        price = book.prices[r.key]["fast"]
        assert r.latency_ms["fast"] == pytest.approx(price.per_frame_ms + price.template_ms / 2)
        assert min(r.latency_ms.values()) <= 6
    objectives = {t.user_attrs["candidate"]: t.values[1] for t in ctl.study.get_trials() if t.values}
    assert objectives and all(v == pytest.approx(book.prices[k]["fast"].priced_ms) for k, v in objectives.items())


def test_table_pricer_prices_what_the_table_amortises():
    vitb = get_preset("vit-b")
    pricer = LatencyTablePricer(("orin-nx",), vitb, template_update=30)
    price = pricer.price(Candidate(6, 2))["orin-nx"]
    assert price.priced_ms == pytest.approx(load_table("orin-nx").estimate(6, 2, template_update=30).amortised_ms)
    with pytest.raises(PrunesearchError, match="--template-update must be from 1 to"):
        LatencyTablePricer(("orin-nx",), vitb, template_update=0)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An experiment with a tiny teacher and data, priced on a local copy of a shipped table."""
    torch.manual_seed(0)
    save_checkpoint(build_teacher(get_preset("small")), tmp_path / "teacher.pt")
    for split in ("train", "val"):
        generate(tmp_path / "data", 2, seed=1, split=split, params=SynthParams(min_frames=8, max_frames=8))
    (tmp_path / "tiny.yaml").write_text(
        "architecture: vit-b\nspace: {file: litetrack, depth: {min: 2, max: 4}}\nteacher: {checkpoint: teacher.pt}\n"
        "data: {path: data, train_sequences: 2, val_sequences: 2}\nsearch: {trials: 2}\n"
    )
    (tmp_path / "latency_models").mkdir()
    (tmp_path / "latency_models" / "mydev.yaml").write_text(Path(load_table("orin-nx").path).read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _study(template_update=None):
    return prepare(RunRequest(("mydev",), "9ms", "tiny.yaml", template_update=template_update), "sqlite:///optuna.db").info.study


def test_a_changed_table_or_template_schedule_starts_a_new_study(workspace):
    first = _study()
    assert _study() == first  # same inputs: the same study resumes
    assert _study(template_update=10) != first
    table = workspace / "latency_models" / "mydev.yaml"
    table.write_text(table.read_text().replace("device: NVIDIA Jetson Orin NX", "device: NVIDIA Jetson Orin NX (re-derived)"))
    assert _study() != first  # a re-derived table never silently resumes the old study


def test_another_budget_or_target_prices_anew_but_trains_the_same(workspace):
    """Another --budget or a second --target is another study, with the same training identity:
    a fine-tune already done for one is found by its training key from the other."""
    shutil.copy(workspace / "latency_models" / "mydev.yaml", workspace / "latency_models" / "otherdev.yaml")
    setups = [prepare(RunRequest(targets, budget, "tiny.yaml"), "sqlite:///optuna.db")
              for targets, budget in ((("mydev",), "9ms"), (("mydev",), "11ms"), (("mydev", "otherdev"), "9ms"))]
    assert len({s.info.study for s in setups}) == 3
    assert len({s.training.digest for s in setups}) == 1
    assert len({s.info.training_identity for s in setups}) == 1
