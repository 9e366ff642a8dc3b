"""The one bounded reader behind every YAML and JSON file prunesearch reads: experiment and space files,
latency tables, measured and published figures. A bomb, a deep nesting or a repeated key is one line
naming the file (and the key and line), whichever of them it is in, and through the CLI too."""

import pytest
from tests.support.bad_inputs import LAUGHS
from tests.support.latency_support import write_published

from prunesearch.cli.main import main
from prunesearch.configfile import MAX_DEPTH, parse_yaml, read_json, read_yaml
from prunesearch.errors import InputError
from prunesearch.latency.derive import read_measured, read_published
from prunesearch.latency.registry import table_path
from prunesearch.latency.table import read_table

MEASURED = (
    "device: my Jetson\nruntime: onnxruntime\nprecision: fp16\nstatistic: p50\nunit: ms\n"
    "models: {B4-2: 8.0, B6-3: 9.5, B9-3: 11.0}\n"
)
DEEP = "[" * (MAX_DEPTH + 8) + "]" * (MAX_DEPTH + 8)


def _published(tmp_path):
    return write_published(tmp_path / "published.yaml", {"B4-2": {"depth": 4, "ai_layers": 2, "fps": {"a": 1}}}).read_text()


# Each reader, the text of a file it accepts, and a top-level key that file holds (to give twice).
FILES = {
    "latency table": (read_table, lambda tmp: table_path("orin-nx").read_text(), "meta"),
    "measured figures": (read_measured, lambda tmp: MEASURED, "precision"),
    "published figures": (read_published, _published, "architecture"),
    "experiment": (read_yaml, lambda tmp: "seed: 0\ndescription: x\n", "seed"),
}


def _one_line(reader, path):
    with pytest.raises(InputError) as err:
        reader(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind", FILES)
def test_files_that_read_fine_still_do(kind, tmp_path):
    reader, text, _ = FILES[kind]
    path = tmp_path / "f.yaml"
    path.write_text(text(tmp_path))
    assert reader(path)


@pytest.mark.parametrize("kind", FILES)
def test_a_billion_laughs_is_refused_in_one_line(kind, tmp_path):
    reader, text, _ = FILES[kind]
    path = tmp_path / "f.yaml"
    path.write_text(text(tmp_path) + f"bomb: {LAUGHS}\n")
    assert "refused" in _one_line(reader, path) and "more than 64 aliases" in _one_line(reader, path)


@pytest.mark.parametrize("kind", FILES)
def test_a_depth_bomb_is_refused_in_one_line(kind, tmp_path):
    reader, text, _ = FILES[kind]
    path = tmp_path / "f.yaml"
    path.write_text(text(tmp_path) + f"deep: {DEEP}\n")
    assert f"nested more than {MAX_DEPTH} levels deep" in _one_line(reader, path)


@pytest.mark.parametrize("kind", FILES)
def test_a_repeated_key_names_the_key_and_both_lines(kind, tmp_path):
    reader, text, key = FILES[kind]
    original = text(tmp_path)
    first = next(i for i, line in enumerate(original.splitlines(), 1) if line.startswith(f"{key}:"))
    path = tmp_path / "f.yaml"
    path.write_text(original + f"{key}: again\n")
    again = len(original.splitlines()) + 1
    message = _one_line(reader, path)
    assert message == f"{path}: line {again}: the key '{key}' is given twice (first on line {first}); keep one of them"


@pytest.mark.parametrize(
    "text, key, line",
    [
        ("a: {x: 1, y: 2, x: 3}\n", "x", 1),  # inside a flow mapping, on one line
        ("a:\n  b: 1\n  'b': 2\n", "b", 3),  # quoting does not make another key
        ("1: a\n0x1: b\n", "1", 2),  # nor another spelling of the same number
    ],
)
def test_repeated_keys_anywhere_are_refused(text, key, line):
    with pytest.raises(InputError, match=rf"^f.yaml: line {line}: the key '?{key}'? is given twice"):
        parse_yaml(text, "f.yaml")


def test_merges_may_still_override_and_the_same_key_in_two_mappings_is_fine():
    text = "base: &b {x: 1, y: 2}\nmid: &m {<<: *b, x: 3}\ntop: {<<: *m, y: 4}\nother: {x: 5}\n"
    assert parse_yaml(text, "f.yaml")["top"] == {"x": 3, "y": 4}


def test_a_fifo_or_a_folder_is_one_line_not_a_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.yaml")
    assert _one_line(read_table, tmp_path / "pipe.yaml").endswith("not a regular file")
    assert "cannot read measured figures" in _one_line(read_measured, tmp_path)


def test_json_has_the_same_bounds(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"a": [1, 2, {"b": null}], "c": 1.5}')
    assert read_json(path) == {"a": [1, 2, {"b": None}], "c": 1.5}
    for text, message in [
        ('{"a": 1,\n "a": 2}', "the key 'a' is given twice in one object"),
        (DEEP, f"nested more than {MAX_DEPTH} levels deep"),
        ("[" * 100_000 + "]" * 100_000, "refused"),  # deeper than the decoder's recursion
        ("[" + "0," * 100_001 + "0]", "holds more than 100000 values"),
        ('{"a": 1,\n "b": }', "line 2 is not valid JSON"),
        ("9" * 5000, "is not valid JSON"),
    ]:
        path.write_text(text)
        assert message in _one_line(read_json, path)


def test_cli_reading_a_table_or_measured_figures_with_a_repeated_key_is_one_line(tmp_path, capsys):
    table = tmp_path / "t.yaml"
    table.write_text(table_path("orin-nx").read_text() + "meta: again\n")
    measured = tmp_path / "m.yaml"
    measured.write_text(MEASURED + "unit: fps\n")
    for argv, where in [
        (["latency", "show", "--target", str(table)], f"{table}: line"),
        (["latency", "derive", "--measured", str(measured), "--name", "x", "--out-dir", str(tmp_path)], f"{measured}: line 7"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and where in err and "is given twice" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "t.yaml"]

