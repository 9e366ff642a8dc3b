"""The one output writer: places refused up front, files and folders appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from prunesearch.errors import InputError, StorageError
from prunesearch.outputs import check_name, check_output, output_file, output_folder, storage_error


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name, words", [
    ("", "must not be empty"), ("  ", "must not be empty"), ("../x", "folder part"), ("a/b", "folder part"),
    ("..", "not '.' or '..'"), (".yaml", "hidden"), ("x" * 300, "bytes long"),
])
def test_check_name_refuses_what_is_not_a_plain_name(name, words):
    with pytest.raises(InputError, match="--name") as err:
        check_name(name)
    assert words in str(err.value)


def test_check_name_allows_plain_and_asked_for_hidden_names():
    assert check_name("B4-2.yaml") == "B4-2.yaml"
    assert check_name(".keep", hidden=True) == ".keep"


def test_a_file_is_written_whole_under_its_name(tmp_path):
    target = tmp_path / "new" / "deeper" / "t.yaml"
    with output_file(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("x: 1\n")
        assert not target.exists()
    assert target.read_text() == "x: 1\n"
    assert listing(tmp_path) == ["new", "new/deeper", "new/deeper/t.yaml"]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_write_leaves_nothing_and_the_old_file_as_it_was(tmp_path, failure):
    old = tmp_path / "t.yaml"
    old.write_text("old\n")
    with pytest.raises(type(failure)):
        with output_file(old) as tmp:
            tmp.write_text("half")
            raise failure
    assert old.read_text() == "old\n" and listing(tmp_path) == ["t.yaml"]
    with pytest.raises(type(failure)):
        with output_file(tmp_path / "made" / "here" / "u.yaml") as tmp:
            raise failure
    assert listing(tmp_path) == ["t.yaml"]  # folders made for the write are removed too


def test_an_os_error_while_writing_is_one_line_naming_the_path(tmp_path):
    target = tmp_path / "t.onnx"
    with pytest.raises(StorageError, match=f"cannot write {target}: the disk is full"):
        with output_file(target):
            raise OSError(28, "No space left on device")
    assert listing(tmp_path) == []


def test_places_that_cannot_hold_the_output_are_refused_before_anything_is_made(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "afolder").mkdir()
    with pytest.raises(StorageError, match="is a folder"):
        check_output(tmp_path / "afolder")
    with pytest.raises(StorageError, match="is a file; give a folder"):
        check_output(tmp_path / "afile", folder=True)
    with pytest.raises(StorageError, match="is a file, not a folder"):
        check_output(tmp_path / "afile" / "x.yaml")
    with pytest.raises(StorageError, match="MiB free"):
        check_output(tmp_path / "x.yaml", estimate=shutil.disk_usage(tmp_path).free * 2)
    with pytest.raises(InputError, match="--out must not be empty"):
        check_output("")
    with pytest.raises(StorageError, match="too long"):
        check_output(tmp_path / "/".join(["d" * 200] * 25) / "x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(StorageError, match="not a regular file"):
        check_output(tmp_path / "fifo")
    assert listing(tmp_path) == ["afile", "afolder", "fifo"]


def test_a_read_only_folder_is_refused_even_for_root(tmp_path):
    """Root passes os.access; only a real probe (here: a read-only bind mount, or chmod for others) tells."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(StorageError, match="not writable"):
                check_output(ro / "x.yaml")
            return
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("no read-only mount here (needs mount privileges)")
        try:
            with pytest.raises(StorageError, match="read-only|not writable"):
                check_output(ro / "x.yaml")
        finally:
            subprocess.run(["umount", str(ro)], check=True)
    finally:
        ro.chmod(0o755)


def test_a_folder_appears_whole_or_merges_into_an_existing_one(tmp_path):
    out = tmp_path / "graphs"
    with output_folder(out) as tmp:
        (tmp / "a.onnx").write_text("a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "s.txt").write_text("s")
        assert not out.exists()
    assert listing(out) == ["a.onnx", "sub", "sub/s.txt"]
    (out / "keep.txt").write_text("k")
    with output_folder(out) as tmp:
        (tmp / "a.onnx").write_text("A")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "t.txt").write_text("t")
    assert listing(out) == ["a.onnx", "keep.txt", "sub", "sub/s.txt", "sub/t.txt"]
    assert (out / "a.onnx").read_text() == "A"


def test_a_failed_folder_write_leaves_the_old_folder_as_it_was(tmp_path):
    out = tmp_path / "graphs"
    out.mkdir()
    (out / "a.onnx").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with output_folder(out) as tmp:
            (tmp / "a.onnx").write_text("new")
            raise KeyboardInterrupt
    assert listing(tmp_path) == ["graphs", "graphs/a.onnx"] and (out / "a.onnx").read_text() == "old"
    with pytest.raises(RuntimeError):
        with output_folder(tmp_path / "new" / "graphs") as tmp:
            raise RuntimeError
    assert listing(tmp_path) == ["graphs", "graphs/a.onnx"]


@pytest.mark.parametrize("code, words", [(30, "read-only"), (21, "a folder is in the way"), (20, "a file, not a folder"),
                                         (36, "too long"), (13, "permission denied")])
def test_storage_errors_say_what_went_wrong(code, words):
    assert str(storage_error(OSError(code, os.strerror(code)), "/x/y", "--out")).startswith("--out cannot write /x/y: ")
    assert words in str(storage_error(OSError(code, os.strerror(code)), "/x/y"))


def test_teacher_train_never_replaces_the_shipped_teacher_unless_named():
    from prunesearch.cli.main import build_parser
    from prunesearch.teacher import SHIPPED_TEACHER

    args = build_parser().parse_args(["teacher", "train"])
    assert args.out.resolve() != SHIPPED_TEACHER.resolve() and args.out.parent == type(args.out)(".")


def test_a_derived_name_stays_inside_the_out_dir(tmp_path, monkeypatch, capsys):
    """``--name ../x`` and ``--name ""`` are refused before any fit; nothing is written anywhere."""
    from prunesearch.cli import main

    (tmp_path / "m.yaml").write_text("device: d\nruntime: onnxruntime\nprecision: fp32\nstatistic: p50\nunit: ms\n"
                                     "models: {B4-2: 8.1, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}\n")
    monkeypatch.chdir(tmp_path)
    for name, words in (("../x", "without a folder part"), ("", "must not be empty"), (".x", "hidden")):
        try:
            code = main(["latency", "derive", "--measured", "m.yaml", "--name", name, "--out-dir", "lm"])
        except SystemExit as stop:  # "" is refused by the parser itself
            code = stop.code
        assert code == 2 and words in capsys.readouterr().err
    assert listing(tmp_path) == ["m.yaml"]
    assert main(["latency", "derive", "--measured", "m.yaml", "--name", "mine", "--out-dir", "lm", "--json"]) == 0
    assert listing(tmp_path) == ["lm", "lm/mine.yaml", "m.yaml"]


def test_a_path_through_a_file_or_a_link_loop_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(StorageError, match="a file, not a folder"):
        check_output(tmp_path / "afile" / "deeper" / "x.yaml")
    with pytest.raises(StorageError, match="symlink loop"):
        check_output(tmp_path / "loop" / "x.yaml")
