"""Property tests: arbitrary input to the YAML readers, the budget parser and the constraint language
raises nothing but PrunesearchError, and costs bounded time and memory.

Examples are derandomized (the same on every run) so a failure reproduces; each one must finish
within the deadline and allocate at most MAX_PEAK bytes (tracemalloc's peak).
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunesearch.errors import PrunesearchError
from prunesearch.search.budget import parse_budget
from prunesearch.search.constraints import parse_constraint
from prunesearch.search.experiment import EXPERIMENT_KEYS, load_experiment
from prunesearch.search.space import CONSTRAINT_NAMES
from prunesearch.configfile import parse_yaml, read_yaml
from tests.support import REPO

MAX_PEAK = 32 << 20
BOUNDED = settings(
    max_examples=150, deadline=1000, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def only_our_error(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None where it raised PrunesearchError; any other exception fails the test."""
    tracemalloc.start()
    try:
        return fn()
    except PrunesearchError as err:
        assert "\n" not in str(err) and len(str(err)) < 1000
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PEAK, f"{peak / 2**20:.0f} MiB"


# YAML text made of the pieces that make files expensive or odd: anchors, aliases, brackets,
# merges, tags, indentation and odd scalars.
YAML_PIECES = st.sampled_from([
    "&a ", "&b ", "*a", "*b", "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ", "<<: ", "!!str ", "!!int ",
    "!!python/object:os.system ", "? ", "seed", "finetune", "threads", "1", "-4", ".nan", ".inf", "1e999",
    "'x'", '"\\u0000"', "null", "true", "~", "#", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\t", "\ufeff",
])
yaml_texts = st.one_of(st.text(max_size=300), st.lists(YAML_PIECES, max_size=60).map("".join))


@BOUNDED
@given(yaml_texts)
def test_parse_yaml_raises_only_our_error(text):
    only_our_error(lambda: parse_yaml(text, "f.yaml"))


@BOUNDED
@given(st.binary(max_size=400))
def test_read_yaml_takes_any_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("y") / "f.yaml"
    path.write_bytes(raw)
    data = only_our_error(lambda: read_yaml(path))
    assert data is None or isinstance(data, dict)


# Values of every YAML type, nested a little; keys drawn from the real ones so the checks are reached.
FIELD_KEYS = [
    *EXPERIMENT_KEYS, "file", "depth", "ai_layers", "min", "max", "rules", "constraints", "checkpoint", "path",
    "train_sequences", "val_sequences", "bad_frames", "steps", "lr", "threads", "log_every", "augment", "flip_prob",
    "trials", "strategy", "sampler", "seeds", "early_stop", "margin", "workers", "got10k_ao", "B4",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["teacher", "depth", "first", "B4-2", "B99-3", "litetrack", "2 * ai_layers <= depth"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELD_KEYS), inner, max_size=4)),
    max_leaves=12,
)
experiments = st.dictionaries(st.sampled_from(list(EXPERIMENT_KEYS)), values, min_size=1, max_size=6)


@BOUNDED
@given(experiments)
def test_any_experiment_is_loaded_or_refused_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("e") / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    only_our_error(lambda: load_experiment(str(path)))


budget_texts = st.one_of(
    st.text(max_size=80),
    st.builds(lambda n, unit: f"{n}{unit}", st.one_of(st.integers(0, 10**500), st.floats(min_value=0), st.text("0123456789.", max_size=450)),
              st.sampled_from(["ms", "s", "fps", "MS", " fps", ""])),
)


@BOUNDED
@given(budget_texts)
def test_any_budget_is_finite_and_positive_or_refused(text):
    budget = only_our_error(lambda: parse_budget(text))
    assert budget is None or (math.isfinite(budget.ms) and budget.ms > 0)


CONSTRAINT_PIECES = st.sampled_from([
    *CONSTRAINT_NAMES, "0", "1", "2", "999999", "9999999", "'first'", '"uniform"', "+", "-", "*", "//", "%", "**",
    "==", "!=", "<", "<=", ">", ">=", "and", "or", "not", "(", ")", "(1,)", "[", "]", ".", ",", "lambda", " ", "in",
])
constraint_texts = st.one_of(st.text(max_size=250), st.lists(CONSTRAINT_PIECES, max_size=80).map(" ".join))
candidate_values = st.fixed_dictionaries({
    "depth": st.integers(0, 24), "ai_layers": st.integers(0, 24), "search_blocks": st.integers(-24, 24),
    "rule": st.sampled_from(["first", "uniform", "influence"]), "teacher_depth": st.integers(0, 24),
})


@BOUNDED
@given(constraint_texts, candidate_values)
def test_any_constraint_is_parsed_and_evaluated_or_refused(text, values):
    def check() -> bool:
        holds = parse_constraint(text, "space.yaml: constraints", CONSTRAINT_NAMES).holds(values)
        assert isinstance(holds, bool)
        return holds

    only_our_error(check)


def test_valid_constraints_agree_with_python():
    """The grammar means what Python would: the same truth for the same text on every candidate."""
    texts = ["2 * ai_layers <= depth", "depth - ai_layers >= 2 or rule == 'first'", "not depth % 3 == 0",
             "-depth + 10 > teacher_depth // 2", "1 < depth <= 9 and rule != \"uniform\"", "(depth + 1) * 2 == 10"]
    for text in texts:
        constraint = parse_constraint(text, "s", CONSTRAINT_NAMES)
        for depth in range(1, 13):
            for rule in ("first", "uniform"):
                names = {"depth": depth, "ai_layers": 2, "search_blocks": depth - 2, "rule": rule, "teacher_depth": 12}
                assert constraint.holds(names) == bool(eval(text, {}, names)), (text, names)  # noqa: S307 - the reference


def test_reader_bounds_hold_on_the_shipped_files():
    shipped = REPO / "prunesearch" / "configs"
    for path in shipped.glob("*/*.yaml"):
        assert read_yaml(path)
