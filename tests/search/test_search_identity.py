"""The training identity (what a fine-tune's result depends on) apart from the pricing identity,
both derived from the settings objects themselves, and the study names built from them."""

import dataclasses

import pytest

from prunesearch.data.processing import CropGeometry
from prunesearch.fields import checked, runtime_only
from prunesearch.search.budget import parse_budget
from prunesearch.search.experiment import DataSpec, EarlyStop, SearchSettings
from prunesearch.search.identity import PricingIdentity, TrainingIdentity, canonical, digest, study_name
from prunesearch.search.space import Candidate
from prunesearch.training.finetune import FinetuneConfig
from tests.support.search_support import make_book, make_space


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A stand-in for FinetuneConfig: one setting that computes, one that only says where."""

    steps: int = checked(200, minimum=1)
    device: str = runtime_only("cpu")


@dataclasses.dataclass(frozen=True)
class RecipePlus(Recipe):
    """The same recipe after someone added a setting, and nothing else."""

    label_smoothing: float = checked(0.0, minimum=0)


@dataclasses.dataclass(frozen=True)
class RecipeThreads(Recipe):
    """The same recipe after someone added a runtime-only setting."""

    threads: int | None = checked(None, minimum=1, runtime=True)


def _training(**changes):
    base = TrainingIdentity("teacher", "data", DataSpec(), FinetuneConfig(), CropGeometry(), real_data=False)
    return dataclasses.replace(base, **changes)


def test_a_new_setting_enters_the_identity_without_touching_the_identity_code():
    assert digest(RecipePlus()) != digest(Recipe())
    assert canonical(RecipePlus()) == {"steps": 200, "label_smoothing": 0.0}


def test_a_runtime_only_setting_stays_out():
    assert digest(RecipeThreads(threads=4)) == digest(Recipe()) == digest(Recipe(device="cuda:1"))
    for runtime in ({"device": "cuda"}, {"loader_workers": 4}, {"threads": 2}):
        assert _training(finetune=FinetuneConfig(**runtime)).digest == _training().digest
    assert _training(data_spec=DataSpec(path=None)).digest == _training().digest


@pytest.mark.parametrize("change", [
    {"teacher": "other teacher"},
    {"data": "other sequences"},
    {"data_spec": DataSpec(val_sequences=8)},
    {"finetune": FinetuneConfig(seed=1)},
    {"finetune": FinetuneConfig(lr=1e-3)},
    {"crop": CropGeometry(2.0, 5.0)},
    {"real_data": True},
])
def test_what_a_fine_tune_depends_on_changes_the_training_identity(change):
    assert _training(**change).digest != _training().digest


def test_a_new_fine_tune_setting_is_in_the_identity_by_default():
    """Every field of FinetuneConfig not marked runtime-only is in the identity: none is forgotten."""
    held = set(canonical(FinetuneConfig()))
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert held == fields - {"device", "loader_workers", "threads"}


def test_budget_and_targets_price_but_do_not_train():
    training = _training()
    names = {}
    for budget, targets in (("6ms", None), ("7ms", None), ("6ms", ("fast",))):
        book = make_book(budget)
        pricing = PricingIdentity.of("vit-b", book)
        if targets:
            pricing = dataclasses.replace(pricing, targets=targets)
        names[(budget, targets)] = study_name("exp", parse_budget(budget), training, pricing, make_space(), SearchSettings())
    assert len(set(names.values())) == 3  # each its own study ...
    # ... and the same student trained the same way has one training key in all of them
    assert training.key((0, 1, 2), 3, 1) == _training().key((0, 1, 2), 3, 1)


def test_the_training_key_is_the_student_not_its_rule_name():
    training = _training()
    first, other = training.key((0, 1, 2, 3), 4, 1), training.key((0, 1, 2, 3), 4, 1)
    assert first == other  # e.g. B4-1/influence keeping the first four blocks is B4-1/first
    assert training.key((0, 1, 2, 4), 4, 1) != first
    assert training.key((0, 1, 2, 3), 4, 2) != first
    assert _training(teacher="other").key((0, 1, 2, 3), 4, 1) != first
    settings_key = training.continue_with(*_confirm()).key((0, 1, 2, 3), 4, 1)
    assert settings_key != first  # a continued fine-tune is another result


def _confirm():
    from prunesearch.search.experiment import ConfirmSettings

    return ConfirmSettings(20, 8, 1), "val-fingerprint"


def test_search_settings_that_say_how_much_stay_out_of_the_study_name():
    book, training = make_book(), _training()
    pricing = PricingIdentity.of("vit-b", book)

    def name(**search):
        return study_name("exp", book.budget, training, pricing, make_space(), SearchSettings(**search))

    assert name() == name(trials=40, workers=4, retries=5, heartbeat_s=1.0, grace_s=5.0, confirm=None)
    assert name(sampler="nsga2") != name()
    assert name(seeds=(Candidate(4, 2),)) != name()
    assert name(early_stop=EarlyStop(rungs=3)) != name()
    assert name() != study_name("exp", book.budget, training, pricing, make_space(rules=["first"]), SearchSettings())
    assert dataclasses.replace(make_space(), source="elsewhere.yaml") == make_space()  # where it was read is not what it is


def test_a_path_in_an_identity_is_a_mistake():
    @dataclasses.dataclass(frozen=True)
    class Located:
        folder: object

    from pathlib import Path

    with pytest.raises(TypeError, match="mark its field runtime-only"):
        digest(Located(Path("/data")))
