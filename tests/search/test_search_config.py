"""Budgets, space files and experiment files: parsing, and one-line errors naming file, key and what is allowed."""

import pytest

from prunesearch.errors import InputError, PrunesearchError
from prunesearch.pruning import BlockRule, choose_blocks, needs_calibration, register_rule, rule_names, unregister_rule
from prunesearch.search.budget import parse_budget
from prunesearch.search.experiment import EarlyStop, load_experiment
from prunesearch.search.space import Candidate, load_space
from prunesearch.configfile import known_configs


@pytest.mark.parametrize("text", ["10ms", "0.01s", "100fps", " 10 MS ", "10.0ms"])
def test_budget_forms_are_the_same_milliseconds(text):
    assert parse_budget(text).ms == pytest.approx(10.0)


@pytest.mark.parametrize("text", ["10", "fast", "0ms", "-5ms", "10 hz", ""])
def test_unparsable_budget_is_one_clear_error(text):
    with pytest.raises(PrunesearchError, match="10ms, 0.01s or 100fps|greater than zero"):
        parse_budget(text)


def test_shipped_files_are_listed_and_load():
    assert {"b4-b9", "quickstart"} <= set(known_configs("experiments"))
    assert "litetrack" in known_configs("spaces")
    for name in ("b4-b9", "quickstart"):
        exp = load_experiment(name)
        assert exp.architecture == "vit-b" and exp.name == name


def test_b4_b9_space_follows_the_paper():
    exp = load_experiment("b4-b9")
    cands = exp.space.candidates(12)
    assert {c.depth for c in cands} == set(range(4, 10))
    assert all(2 * c.ai_layers <= c.depth for c in cands)
    assert {c.rule for c in cands} == {"first", "uniform", "influence"}
    assert {Candidate(9, 3), Candidate(8, 3), Candidate(6, 3), Candidate(4, 2)} <= set(cands)
    assert [c.key for c in exp.search.seeds] == ["B9-3/first", "B8-3/first", "B6-3/first", "B4-2/first"]
    published = {r.label: (r.candidate.key, r.ao) for r in exp.reference}
    assert published["LiteTrack-B4-2"] == ("B4-2/first", pytest.approx(0.652))
    assert len(published) == 4


def test_litetrack_space_reaches_the_teachers_depth(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder with no spaces/: the README's path still finds the shipped file
    assert load_space("spaces/litetrack.yaml").source == load_space("litetrack").source
    with pytest.raises(PrunesearchError, match="space file elsewhere/litetrack.yaml does not exist"):
        load_space("elsewhere/litetrack.yaml")
    space = load_space("litetrack")
    assert max(c.depth for c in space.candidates(12)) == 12
    assert max(c.depth for c in space.candidates(6)) == 6


def test_candidate_names():
    assert Candidate.parse("B4-2") == Candidate(4, 2, "first")
    assert Candidate.parse("B6-3/uniform").key == "B6-3/uniform"
    with pytest.raises(PrunesearchError, match="B4-2/first"):
        Candidate.parse("4-2")


class _Last(BlockRule):
    """A rule a plugin could add: the last N teacher blocks."""

    name = "last"

    def choose(self, teacher_depth, depth, influence):
        return tuple(range(teacher_depth - depth, teacher_depth))


def test_a_registered_rule_is_known_to_spaces_and_block_choice_then_gone(tmp_path):
    space_file = _write(tmp_path, "depth: {min: 3, max: 3}\nai_layers: {min: 1, max: 1}\nrules: [first, last]\n", "s.yaml")
    with pytest.raises(PrunesearchError, match=r"rules: expected a list drawn from first, uniform, influence, got"):
        load_space(space_file)
    with pytest.raises(InputError, match=r"^unknown block-choice rule 'last'; use one of first, uniform, influence or a list"):
        choose_blocks(12, 3, "last")
    register_rule(_Last)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_rule(_Last)
        with pytest.raises(ValueError, match=r"name must be a word .* got 'a/b'"):
            register_rule(type("Slashed", (BlockRule,), {"name": "a/b"}))
        assert rule_names() == ("first", "uniform", "influence", "last")
        assert [c.key for c in load_space(space_file).candidates(12)] == ["B3-1/first", "B3-1/last"]
        assert choose_blocks(12, 3, "last") == (9, 10, 11) and not needs_calibration("last")
        assert Candidate.parse("B3-1/last").rule == "last"
    finally:
        unregister_rule("last")
    assert rule_names() == ("first", "uniform", "influence")
    with pytest.raises(PrunesearchError, match=r"rules: expected a list drawn from first, uniform, influence, got"):
        load_space(space_file)


def _write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("search: {trials: six}\n", r"exp.yaml: search.trials: expected a whole number >= 1 or auto, got 'six'"),
        ("search: {trials: 0}\n", r"exp.yaml: search.trials: expected a whole number >= 1 or auto, got 0"),
        ("search: {trials: true}\n", r"exp.yaml: search.trials: expected a whole number >= 1 or auto, got True"),
        ("search: {trials: 2.5}\n", r"exp.yaml: search.trials: expected a whole number >= 1 or auto, got 2.5"),
        ("search: {stop_chance: 0}\n", r"exp.yaml: search.stop_chance: expected a finite number > 0 <= 0.5"),
        ("search: {stop_chance: 0.9}\n", r"exp.yaml: search.stop_chance: expected a finite number > 0 <= 0.5"),
        ("search: {strategy: greedy}\n", r"exp.yaml: search.strategy: expected one of auto, enumerate, sample, model"),
        ("serch: {}\n", r"exp.yaml: serch: unknown key; allowed keys here: description, architecture"),
        ("architecture: vit-l\n", r"exp.yaml: architecture: expected one of small, vit-b, got 'vit-l'"),
        ("search: {sampler: cmaes}\n", r"search.sampler: expected one of tpe, nsga2, random"),
        ("space: {file: litetrack, rules: [first, best]}\n", r"space.rules: expected a list drawn from first, uniform, influence"),
        ("space: {file: litetrack, depth: {min: 0}}\n", r"space.depth.min: expected a whole number >= 1"),
        ("space: {file: litetrack, depth: {max: deepest}}\n", r"space.depth.max: expected a whole number >= 1 or 'teacher'"),
        ("space: {file: litetrack, constraints: ['depth > width']}\n", r"unknown name 'width'.*allowed: depth, ai_layers"),
        ("space: {file: litetrack, constraints: ['__import__(\"os\")']}\n", r"unknown name '__import__'; allowed: depth"),
        ("space: {file: litetrack, constraints: [\"rule != 'unifrom'\"]}\n", r"'unifrom' is not a rule; the rules are first, influence, uniform"),
        ("teacher: {checkpoint: nowhere.pt}\n", r"teacher checkpoint .*nowhere.pt \(.*exp.yaml: teacher.checkpoint\) does not exist"),
        ("data: {path: no/such/dir}\n", r"data folder .*no/such/dir \(.*exp.yaml: data.path\) does not exist"),
        ("search: {seeds: [B4]}\n", r"cannot read candidate 'B4'"),
        ("reference: {B4: {depth: 4, ai_layers: 2, ao: 65}}\n", r"reference.B4.ao: unknown key; allowed keys here: depth, ai_layers, got10k_ao"),
        ("reference: {B4: {depth: 4, ai_layers: 6, got10k_ao: 65}}\n", r"reference.B4.ai_layers: expected a whole number from 1 to 4, got 6"),
        ("search: [1, 2\n", r"exp.yaml: line \d+ is not valid YAML"),
        ("- a list\n", r"expected a mapping of keys at the top level"),
    ],
)
def test_experiment_errors_name_file_key_and_allowed(tmp_path, text, expected):
    with pytest.raises(PrunesearchError, match=expected):
        load_experiment(_write(tmp_path, text))


def test_early_stop_keys_default_to_the_dataclass(tmp_path):
    exp = load_experiment(_write(tmp_path, "search: {early_stop: {margin: 0.1}}\n"))
    assert exp.search.early_stop == EarlyStop(margin=0.1)
    assert load_experiment(_write(tmp_path, "search: {early_stop: false}\n")).search.early_stop is None
    with pytest.raises(PrunesearchError, match=r"search.early_stop.margin: expected a finite number from 0 to 1"):
        load_experiment(_write(tmp_path, "search: {early_stop: {margin: -1}}\n"))


def test_confirmation_is_on_for_a_dataset_off_for_built_in_data_and_checked(tmp_path):
    from prunesearch.search.experiment import ConfirmSettings

    built_in = load_experiment(_write(tmp_path, "search: {}\n"))
    assert built_in.confirm is None
    (tmp_path / "data").mkdir()
    assert built_in.with_overrides(data=str(tmp_path / "data")).confirm == ConfirmSettings()  # --data DIR
    assert load_experiment(_write(tmp_path, "data: {path: data}\n")).confirm == ConfirmSettings()
    assert load_experiment(_write(tmp_path, "data: {path: data}\nsearch: {confirm: false}\n")).confirm is None
    on = load_experiment(_write(tmp_path, "search: {confirm: {steps: 300, seeds: 3}}\nfinetune: {seeds: 2}\n"))
    assert on.confirm == ConfirmSettings(steps=300, seeds=3) and on.finetune_config().seeds == 2
    assert on.confirm.resolved(100, 8) == ConfirmSettings(300, 32, 3)
    assert load_experiment(_write(tmp_path, "search: {confirm: true}\n")).confirm.resolved(200, 8) == ConfirmSettings(800, 32, 1)
    for text, message in [
        ("search: {confirm: sometimes}\n", r"search.confirm: expected auto, true, false or a mapping of steps, val_sequences, seeds, got 'sometimes'"),
        ("search: {confirm: {steps: 0}}\n", r"search.confirm.steps: expected a whole number >= 1"),
        ("search: {confirm: {seeds: 65}}\n", r"search.confirm.seeds: expected a whole number from 1 to 64"),
        ("search: {confirm: {step: 10}}\n", r"search.confirm.step: unknown key; allowed keys here: steps, val_sequences, seeds"),
        ("finetune: {seeds: 0}\n", r"finetune.seeds: expected a whole number from 1 to 64"),
    ]:
        with pytest.raises(PrunesearchError, match=message):
            load_experiment(_write(tmp_path, text))


def test_space_deeper_than_teacher_is_refused(tmp_path):
    exp = load_experiment(_write(tmp_path, "space: {file: litetrack, depth: {min: 2, max: 14}}\n"))
    with pytest.raises(PrunesearchError, match="depth.max 14 is deeper than the teacher's 12 blocks"):
        exp.space.candidates(12)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(PrunesearchError, match=r"unknown experiment 'b5'; known experiments: .*b4-b9.*quickstart"):
        load_experiment("b5")


def test_working_folder_copy_wins_over_the_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "b4-b9.yaml").write_text("search: {trials: 2}\n")
    monkeypatch.chdir(tmp_path)
    exp = load_experiment("b4-b9")
    assert exp.path == tmp_path / "experiments" / "b4-b9.yaml"
    assert exp.search.trials == 2


def _study_name(exp):
    """The study an experiment names, with fixed fingerprints and prices (see tests/search/test_search_identity.py)."""
    from prunesearch.data.processing import CropGeometry
    from prunesearch.search.identity import PricingIdentity, TrainingIdentity, study_name

    training = TrainingIdentity("teacher", "data", exp.data, exp.finetune_config(), CropGeometry(), exp.data.path is not None)
    pricing = PricingIdentity(exp.architecture, ("t",), {"t": "table"}, 10.0, None)
    return study_name(exp.name, parse_budget("10ms"), training, pricing, exp.space, exp.search)


def test_overrides_and_identity(tmp_path):
    exp = load_experiment("b4-b9")
    more = exp.with_overrides(trials=20)
    assert more.search.trials == 20 and _study_name(more) == _study_name(exp)
    assert _study_name(exp.with_overrides(seed=3)) != _study_name(exp)
    with pytest.raises(PrunesearchError, match=r"data folder .*missing \(--data\) does not exist"):
        exp.with_overrides(data=str(tmp_path / "missing"))
    with pytest.raises(PrunesearchError, match=r"checkpoint .*t.pt \(--teacher\) does not exist"):
        exp.with_overrides(teacher=str(tmp_path / "t.pt"))
    assert exp.search.trials is None and exp.with_overrides(trials="auto").search.trials is None
    assert more.with_overrides(trials="auto").search.trials is None
    with pytest.raises(PrunesearchError, match="--trials must be a whole number >= 1 or auto, got 0"):
        exp.with_overrides(trials=0)


def test_a_setting_and_its_rule_are_one_line():
    """Section.build reads types from the annotations and ranges from ``checked``; nested dataclasses too."""
    import dataclasses

    from prunesearch.fields import checked
    from prunesearch.configfile import Section

    @dataclasses.dataclass(frozen=True)
    class Inner:
        share: float = checked(0.5, minimum=0, maximum=1)

    @dataclasses.dataclass(frozen=True)
    class Settings:
        device: str = checked("cpu", choices=("cpu", "cuda"))
        loader_workers: int = checked(0, minimum=0, maximum=64)
        scale: float | None = checked(None, above=0)
        verbose: bool = False
        inner: Inner = dataclasses.field(default_factory=Inner)

    def build(data):
        return Section(data, "f.yaml", "evaluation.").build(Settings)

    assert build({"device": "cuda", "scale": 2, "inner": {"share": 1}}) == Settings("cuda", 0, 2.0, False, Inner(1.0))
    for data, message in [
        ({"device": "tpu"}, r"f.yaml: evaluation.device: expected one of cpu, cuda, got 'tpu'"),
        ({"loader_workers": 65}, r"evaluation.loader_workers: expected a whole number from 0 to 64 \(default 0\), got 65"),
        ({"scale": 0}, r"evaluation.scale: expected a finite number > 0, got 0"),
        ({"scale": float("nan")}, r"evaluation.scale: expected a finite number > 0, got nan"),
        ({"verbose": "yes"}, r"evaluation.verbose: expected true or false \(default False\), got 'yes'"),
        ({"inner": {"share": -1}}, r"evaluation.inner.share: expected a finite number from 0 to 1 \(default 0.5\), got -1"),
        ({"inner": 3}, r"evaluation.inner: expected a mapping of keys, got 3"),
        ({"devise": "cpu"}, r"evaluation.devise: unknown key; allowed keys here: device, loader_workers"),
    ]:
        with pytest.raises(PrunesearchError, match=message):
            build(data)


def test_device_settings_are_checked_and_leave_the_study_identity_alone(tmp_path):
    with pytest.raises(PrunesearchError, match=r"evaluation.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        load_experiment(_write(tmp_path, "evaluation: {device: gpu}\n"))
    with pytest.raises(PrunesearchError, match=r"finetune.precision: expected one of auto, fp32, bf16, fp16, got 'fp8'"):
        load_experiment(_write(tmp_path, "finetune: {precision: fp8}\n")).finetune_config()
    with pytest.raises(PrunesearchError, match=r"finetune.loader_workers: expected a whole number >= 0, got -1"):
        load_experiment(_write(tmp_path, "finetune: {loader_workers: -1}\n")).finetune_config()
    cpu = load_experiment(_write(tmp_path, "finetune: {device: cpu, loader_workers: 0}\nevaluation: {device: cpu}\n"))
    gpu = load_experiment(_write(tmp_path, "finetune: {device: 'cuda:1', loader_workers: 8}\n"))
    assert cpu.evaluation_device == "cpu" and cpu.finetune_config().device == "cpu"
    assert _study_name(cpu) == _study_name(gpu)
    assert _study_name(load_experiment(_write(tmp_path, "finetune: {precision: bf16}\n"))) != _study_name(cpu)
