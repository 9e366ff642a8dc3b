"""The input surface of the CLI as a table, crossed with classes of bad value: the systematic battery's cases.

Three kinds of surface, each with the classes of bad value that apply to it:

- ``NUMBERS``: every flag taking a number, crossed with ``NUMBER_CLASSES`` (empty, zero, negative,
  huge, beyond a C int, non-finite, wrong type) less the classes that are valid for that flag;
- ``PATHS_IN`` / ``PATHS_OUT``: every flag naming a file or folder to read or to write, crossed with
  ``IN_CLASSES`` / ``OUT_CLASSES`` (empty, missing, a folder where a file belongs and the reverse,
  unreadable or read-only, a FIFO, a symlink loop, a name over the system limit, a device, outside
  the folder, under a file);
- ``FILES``: each kind of file the tool reads (experiment, space, latency table, measured and
  published figures, checkpoint, dataset list/meta/groundtruth/frames), with contents of each
  class (empty, not UTF-8, duplicate key, wrong type, zero, huge, non-finite, too deep, ...).

A new flag or file kind is one row here, and its crosses follow. Every case must end in one line on
stderr, a non-zero exit, within seconds, leaving nothing behind (``benchmarks/bad_input_battery.py
--surface`` runs them all as real processes; ``tests/cli/test_input_surface.py`` a fast subset in-process).
``unprivileged`` cases (unreadable or read-only paths) must run without root's permission override.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.bad_inputs import LAUGHS
from tests.support.tiny_datasets import write_got10k
from tests.support import REPO

SHIPPED_TABLES = REPO / "prunesearch" / "latency" / "shipped_tables"
RUN = ("run", "--experiment", "{dir}/exp.yaml", "--target", "orin-nx", "--budget", "1000ms")
MEASURED = ("device: my board\nruntime: onnxruntime\nprecision: fp32\nstatistic: p50\nunit: ms\n"
            "models: {B4-2: 8.1, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1, teacher: 16.0}\n")
LONG = "x" * 300  # over NAME_MAX (255)


@dataclass(frozen=True)
class SurfaceCase:
    name: str  # surface/class
    argv: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    unprivileged: bool = False  # needs a user without root's file-permission override (chmod 000 / 555)
    fast: bool = False  # in the pytest subset


# --- numbers -----------------------------------------------------------------------------------------
NUMBER_CLASSES = {"empty": "", "zero": "0", "negative": "-1", "huge": "9" * 30, "int_max": "2147483648",
                  "non_finite": "nan", "infinite": "inf", "wrong_type": "abc"}
# (surface, command line before the flag, flag, classes that are valid values of this flag)
NUMBERS = [
    ("synth.sequences", ("data", "synth", "--out", "{dir}/o"), "--sequences", ()),
    ("eval.resamples", ("eval",), "--resamples", ()),
    ("eval.level", ("eval",), "--level", ()),
    ("eval.sequences", ("eval",), "--sequences", ("int_max",)),  # "only the first N": more than there are is all
    ("eval.template_factor", ("eval",), "--template-factor", ()),
    ("eval.search_factor", ("eval",), "--search-factor", ()),
    ("show.template_update", ("latency", "show", "--target", "orin-nx"), "--template-update", ()),
    ("validate.samples", ("latency", "validate", "--target", "epyc-ort-fp32-1t-small"), "--samples", ()),
    ("validate.rounds", ("latency", "validate", "--target", "epyc-ort-fp32-1t-small"), "--rounds", ()),
    ("validate.seed", ("latency", "validate", "--target", "epyc-ort-fp32-1t-small"), "--seed", ("zero",)),
    ("profile.rounds", ("profile", "--name", "p"), "--rounds", ()),
    ("profile.chain", ("profile", "--name", "p"), "--chain", ()),
    ("inspect.depth", ("inspect", "--no-fvcore", "--ai-layers", "1"), "--depth", ()),
    ("inspect.ai_layers", ("inspect", "--no-fvcore", "--depth", "2"), "--ai-layers", ()),
    ("export.depth", ("export", "--out", "{dir}/g", "--ai-layers", "1"), "--depth", ()),
    ("teacher.steps", ("teacher", "train", "--out", "{dir}/t.pt"), "--steps", ()),
    ("teacher.threads", ("teacher", "train", "--out", "{dir}/t.pt", "--steps", "1"), "--threads", ()),
    ("teacher.seed", ("teacher", "train", "--out", "{dir}/t.pt", "--steps", "1"), "--seed", ("zero", "int_max")),  # 2^31 is a seed
    ("run.seed", RUN, "--seed", ("zero", "int_max")),  # seeds run to 2^32 - 1
    ("run.trials", RUN, "--trials", ("int_max",)),  # an upper bound of the study, not an allocation
    ("run.template_factor", RUN, "--template-factor", ()),
    ("run.search_factor", RUN, "--search-factor", ()),
    ("run.template_update", RUN, "--template-update", ()),
]
FAST_NUMBERS = {"synth.sequences", "eval.resamples", "show.template_update", "inspect.depth", "teacher.steps"}

# --- paths read --------------------------------------------------------------------------------------
# (surface, command line with {V}, "file" or "folder")
PATHS_IN = [
    ("eval.checkpoint", ("eval", "--checkpoint", "{V}"), "file"),
    ("eval.onnx", ("eval", "--onnx", "{V}"), "folder"),
    ("eval.data", ("eval", "--data", "{V}"), "folder"),
    ("inspect.checkpoint", ("inspect", "--no-fvcore", "--checkpoint", "{V}"), "file"),
    ("inspect.data", ("inspect", "--no-fvcore", "--depth", "2", "--ai-layers", "1", "--rule", "influence", "--data", "{V}"),
     "folder"),
    ("show.target", ("latency", "show", "--target", "{V}"), "file"),
    ("show.space", ("latency", "show", "--target", "orin-nx", "--space", "{V}"), "file"),
    ("derive.measured", ("latency", "derive", "--measured", "{V}", "--name", "m"), "file"),
    ("derive.published", ("latency", "derive", "--published", "{V}"), "file"),
    ("derive.tie", ("latency", "derive", "--target", "orin-nx", "--tie", "{V}"), "file"),
    ("run.experiment", ("run", "--experiment", "{V}", "--target", "orin-nx", "--budget", "1000ms"), "file"),
    ("extract.source", ("checkpoint", "extract", "{V}", "{dir}/out.pth"), "file"),
]
IN_CLASSES = ("empty", "missing", "wrong_kind", "unreadable", "fifo", "symlink_loop", "too_long", "device")
FAST_PATHS_IN = {"eval.data", "show.target", "derive.measured"}

# --- paths written -----------------------------------------------------------------------------------
PATHS_OUT = [
    ("synth.out", ("data", "synth", "--sequences", "1", "--out", "{V}"), "folder"),
    ("export.out", ("export", "--preset", "small", "--out", "{V}"), "folder"),
    ("eval.out", ("eval", "--sequences", "1", "--resamples", "10", "--out", "{V}"), "folder"),
    ("derive.out_dir", ("latency", "derive", "--target", "orin-nx", "--out-dir", "{V}"), "folder"),
    ("derive.name", ("latency", "derive", "--measured", "{dir}/measured.yaml", "--out-dir", "{dir}/lm", "--name", "{V}"), "name"),
    ("profile.name", ("profile", "--name", "{V}", "--rounds", "1"), "name"),
    ("profile.out", ("profile", "--name", "p", "--rounds", "1", "--out", "{V}"), "file"),
    ("teacher.out", ("teacher", "train", "--steps", "1", "--out", "{V}"), "file"),
    ("pareto.plot", ("pareto", "--plot", "{V}"), "file"),
]
OUT_CLASSES = ("empty", "wrong_kind", "read_only", "under_a_file", "fifo", "symlink_loop", "too_long", "device")
NAME_CLASSES = {"empty": "", "outside": "../x", "folder_part": "a/b", "hidden": ".hidden", "too_long": LONG}
FAST_PATHS_OUT = {"synth.out", "export.out", "derive.name", "teacher.out"}


def _in_value(cls: str, kind: str) -> str:
    return {
        "empty": "", "missing": "{dir}/nothing-here", "wrong_kind": "{dir}/afile.yaml" if kind == "folder" else "{dir}/afolder",
        "unreadable": "{dir}/locked", "fifo": "{dir}/fifo", "symlink_loop": "{dir}/loop", "too_long": "{dir}/" + LONG,
        "device": "/dev/zero",
    }[cls]


def _out_value(cls: str, kind: str) -> str:
    return {
        "empty": "", "wrong_kind": "{dir}/afile.yaml" if kind == "folder" else "{dir}/afolder",
        "read_only": "{dir}/ro/x", "under_a_file": "{dir}/afile.yaml/x", "fifo": "{dir}/fifo",
        "symlink_loop": "{dir}/loop/x", "too_long": "{dir}/" + LONG, "device": "/dev/full",
    }[cls]


def _places(folder: Path, locked_kind: str = "file") -> None:
    """What the path classes point at: a file, a folder, a FIFO, a symlink loop, a locked path, a read-only folder."""
    (folder / "afile.yaml").write_text("a: 1\n")
    (folder / "afolder").mkdir()
    os.mkfifo(folder / "fifo")
    os.symlink(folder / "loop", folder / "loop")
    locked = folder / "locked"
    if locked_kind == "folder":
        write_got10k(locked, "val", sequences=1, frames=3)
    else:
        locked.write_text("format: prunesearch-latency/1\n")
    locked.chmod(0)
    (folder / "ro").mkdir()
    (folder / "ro").chmod(0o555)
    (folder / "measured.yaml").write_text(MEASURED)


# --- file contents -----------------------------------------------------------------------------------
def _table(edit: Callable[[str], str], name: str = "orin-nx.yaml") -> dict[str, str | bytes]:
    return {"t.yaml": edit((SHIPPED_TABLES / name).read_text())}


def _table_lines(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def _all_ms(text: str, value: str) -> str:
    import re

    return re.sub(r"(?m)^  ms: .*$", f"  ms: {value}", text)


SHOW_T = ("latency", "show", "--target", "{dir}/t.yaml")
SPACE = ("latency", "show", "--target", "orin-nx", "--space", "{dir}/s.yaml")
DERIVE_M = ("latency", "derive", "--measured", "{dir}/m.yaml", "--name", "m", "--out-dir", "{dir}/lm")
DERIVE_P = ("latency", "derive", "--published", "{dir}/p.yaml", "--out-dir", "{dir}/lm")
EVAL_D = ("eval", "--data", "{dir}/got", "--split", "val", "--resamples", "10")
EVAL_C = ("eval", "--checkpoint", "{dir}/c.pt")


def _measured(models: str) -> dict[str, str | bytes]:
    return {"m.yaml": MEASURED.replace("models: {B4-2: 8.1, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1, teacher: 16.0}", models)}


def _dataset(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        write_got10k(folder / "got", "val", sequences=1, frames=4)
        edit(folder / "got" / "val" / "GOT-10k_Val_000001")
    return prepare


def _frame(seq: Path) -> Path:
    return seq / "00000002.jpg"


def _link_zero(seq: Path) -> None:
    _frame(seq).unlink()
    os.symlink("/dev/zero", _frame(seq))


def _fifo_frame(seq: Path) -> None:
    _frame(seq).unlink()
    os.mkfifo(_frame(seq))


def _huge_header(seq: Path) -> None:
    """A JPEG whose start-of-frame segment claims 20000 x 20000 pixels (the rest of the file unchanged)."""
    data = bytearray(_frame(seq).read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = (20000).to_bytes(2, "big") * 2
    _frame(seq).write_bytes(bytes(data))


def _extra_frame(seq: Path) -> None:
    (seq / "00000005.jpg").write_bytes(_frame(seq).read_bytes())


def _box_outside(seq: Path) -> None:
    lines = (seq / "groundtruth.txt").read_text().splitlines()
    lines[2] = "5000.0,5000.0,20.0,16.0"
    (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")


def _meta(value: str) -> Callable[[Path], None]:
    def edit(seq: Path) -> None:
        text = (seq / "meta_info.ini").read_text()
        (seq / "meta_info.ini").write_text(text.split("resolution:")[0] + f"resolution: {value}\n")
    return edit


def _list_not_utf8(seq: Path) -> None:
    (seq.parent / "list.txt").write_bytes(b"GOT-10k_Val_\xff\xfe\n")


def _locked_sequence(seq: Path) -> None:
    seq.chmod(0)


def _empty_list(seq: Path) -> None:
    (seq.parent / "list.txt").write_text("\n")


def _gt_text(seq: Path) -> None:
    (seq / "groundtruth.txt").write_text("a,b,c,d\n" * 4)


FILES: list[SurfaceCase] = [
    # latency tables
    SurfaceCase("table/empty", SHOW_T, {"t.yaml": ""}, fast=True),
    SurfaceCase("table/not_utf8", SHOW_T, {"t.yaml": b"format: prunesearch-latency/1\nname: caf\xe9\n"}),
    SurfaceCase("table/duplicate_key", SHOW_T, _table(lambda t: t.replace("name: orin-nx\n", "name: orin-nx\nname: other\n", 1)),
                fast=True),
    SurfaceCase("table/zero_block_ms", SHOW_T, _table(lambda t: _all_ms(t, "0")), fast=True),
    SurfaceCase("table/huge_ms", SHOW_T, _table(lambda t: _all_ms(t, "1e308")), fast=True),
    SurfaceCase("table/negative_ms", SHOW_T, _table(lambda t: _all_ms(t, "-1"))),
    SurfaceCase("table/nan_ms", SHOW_T, _table(lambda t: _all_ms(t, ".nan"))),
    SurfaceCase("table/text_ms", SHOW_T, _table(lambda t: _all_ms(t, "fast"))),
    SurfaceCase("table/no_provenance", SHOW_T, _table(lambda t: t.split("\nprovenance:")[0] + "\n"), fast=True),
    SurfaceCase("table/depth_100000", SHOW_T, _table(lambda t: _table_lines(t, "  depth: 12\n", "  depth: 100000\n")), fast=True),
    SurfaceCase("table/depth_text", SHOW_T, _table(lambda t: _table_lines(t, "  depth: 12\n", "  depth: twelve\n"))),
    SurfaceCase("table/zero_calibration", SHOW_T, _table(
        lambda t: t.split("\nprovenance:")[0] + "\ncalibration: {graph_ms: 0, block_scale: 0, other_scale: 0, graphs: []}\n"
        "provenance:" + t.split("\nprovenance:")[1], "epyc-ort-fp32-1t-small.yaml")),
    SurfaceCase("table/laughs", SHOW_T, {"t.yaml": "format: prunesearch-latency/1\nname: " + LAUGHS + "\n"}),
    SurfaceCase("table/wrong_type", SHOW_T, {"t.yaml": "- 1\n- 2\n"}),
    # spaces
    SurfaceCase("space/empty", SPACE, {"s.yaml": ""}),
    SurfaceCase("space/not_utf8", SPACE, {"s.yaml": b"description: caf\xe9\n"}),
    SurfaceCase("space/duplicate_key", SPACE, {"s.yaml": "depth: {min: 1, max: 4}\ndepth: {min: 2, max: 3}\n"}, fast=True),
    SurfaceCase("space/wrong_type", SPACE, {"s.yaml": "depth: many\n"}),
    SurfaceCase("space/huge", SPACE, {"s.yaml": "depth: {min: 1, max: 100000}\n"}),
    # measured figures
    SurfaceCase("measured/falling_with_depth", DERIVE_M, _measured(
        "models: {B4-2: 16.0, B6-3: 12.0, B8-3: 9.0, B9-3: 8.0, teacher: 7.0}"), fast=True),
    SurfaceCase("measured/duplicate_key", DERIVE_M, _measured(
        "models: {B4-2: 8.1, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}\nmodels: {B4-2: 1}"), fast=True),
    SurfaceCase("measured/zero", DERIVE_M, _measured("models: {B4-2: 0, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}")),
    SurfaceCase("measured/negative", DERIVE_M, _measured("models: {B4-2: -8, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}")),
    SurfaceCase("measured/non_finite", DERIVE_M, _measured("models: {B4-2: .inf, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}")),
    SurfaceCase("measured/huge", DERIVE_M, _measured("models: {B4-2: 1e308, B6-3: 1e308, B8-3: 1e308, B9-3: 1e308}")),
    SurfaceCase("measured/wrong_type", DERIVE_M, _measured("models: [B4-2, B6-3]")),
    SurfaceCase("measured/not_utf8", DERIVE_M, {"m.yaml": b"device: caf\xe9\n"}),
    SurfaceCase("measured/student_99", DERIVE_M, _measured("models: {B99-3: 8.1, B6-3: 10.2, B8-3: 12.0, B9-3: 13.1}")),
    # published figures
    SurfaceCase("published/empty", DERIVE_P, {"p.yaml": ""}),
    SurfaceCase("published/duplicate_key", DERIVE_P, {"p.yaml": "architecture: {}\narchitecture: {}\n"}),
    SurfaceCase("published/wrong_type", DERIVE_P, {"p.yaml": "architecture: 3\nvariants: 4\n"}),
    # experiments (beyond tests/support/bad_inputs.py)
    SurfaceCase("experiment/duplicate_key", RUN, {"exp.yaml": "seed: 1\nseed: 2\n"}, fast=True),
    SurfaceCase("experiment/lr_huge", RUN, {"exp.yaml": "finetune: {lr: 1e308}\n"}, fast=True),
    SurfaceCase("experiment/warmup_over_steps", RUN, {"exp.yaml": "finetune: {steps: 5, warmup_steps: 50}\n"}, fast=True),
    SurfaceCase("experiment/crop_factor_tiny", (*RUN, "--template-factor", "1e-300"), {"exp.yaml": "seed: 0\n"}, fast=True),
    SurfaceCase("experiment/template_update_huge", (*RUN, "--template-update", "1000000000000000000"), {"exp.yaml": "seed: 0\n"}),
    # checkpoints (the reader is checkpoint_file.py)
    SurfaceCase("checkpoint/empty", EVAL_C, {"c.pt": b""}),
    SurfaceCase("checkpoint/text", EVAL_C, {"c.pt": "not a checkpoint\n"}),
    SurfaceCase("checkpoint/truncated_zip", EVAL_C, {"c.pt": b"PK\x03\x04" + b"\0" * 60}),
    # datasets
    SurfaceCase("dataset/frame_dev_zero", EVAL_D, prepare=_dataset(_link_zero), fast=True),
    SurfaceCase("dataset/frame_fifo", EVAL_D, prepare=_dataset(_fifo_frame), fast=True),
    SurfaceCase("dataset/frame_20000x20000", EVAL_D, prepare=_dataset(_huge_header), fast=True),
    SurfaceCase("dataset/more_frames_than_boxes", EVAL_D, prepare=_dataset(_extra_frame), fast=True),
    SurfaceCase("dataset/box_outside_frame", EVAL_D, prepare=_dataset(_box_outside), fast=True),
    SurfaceCase("dataset/resolution_inf", EVAL_D, prepare=_dataset(_meta("(inf, 720)")), fast=True),
    SurfaceCase("dataset/resolution_nested", EVAL_D, prepare=_dataset(_meta("(" * 5000 + "1" + ")" * 5000)), fast=True),
    SurfaceCase("dataset/list_not_utf8", EVAL_D, prepare=_dataset(_list_not_utf8), fast=True),
    SurfaceCase("dataset/list_empty", EVAL_D, prepare=_dataset(_empty_list)),
    SurfaceCase("dataset/groundtruth_text", EVAL_D, prepare=_dataset(_gt_text)),
    SurfaceCase("dataset/sequence_unreadable", EVAL_D, prepare=_dataset(_locked_sequence), unprivileged=True),
    # flags that only make sense together
    SurfaceCase("flags/rule_without_depth", ("inspect", "--no-fvcore", "--rule", "uniform"), fast=True),
    SurfaceCase("flags/rule_block_99", ("inspect", "--no-fvcore", "--depth", "2", "--ai-layers", "1", "--rule", "0,99"), fast=True),
    SurfaceCase("flags/device_empty", ("eval", "--device", ""), fast=True),
    SurfaceCase("flags/data_empty", ("eval", "--data", "")),
    SurfaceCase("flags/teacher_steps_zero", ("teacher", "train", "--steps", "0"), fast=True),
]

def cases() -> list[SurfaceCase]:
    """Every cross of the table: file contents first, then paths written and read, then numbers (mostly argparse's)."""
    out: list[SurfaceCase] = list(FILES)
    for surface, argv, kind in PATHS_OUT:
        classes = NAME_CLASSES if kind == "name" else {c: _out_value(c, kind) for c in OUT_CLASSES}
        for cls, value in classes.items():
            out.append(SurfaceCase(f"{surface}/{cls}", tuple(a.replace("{V}", value) for a in argv), prepare=_places,
                                   unprivileged=cls == "read_only",
                                   fast=surface in FAST_PATHS_OUT and cls in ("empty", "wrong_kind", "fifo", "outside", "hidden")))
    for surface, argv, kind in PATHS_IN:
        for cls in IN_CLASSES:
            value = _in_value(cls, kind)
            out.append(SurfaceCase(f"{surface}/{cls}", tuple(a.replace("{V}", value) for a in argv),
                                   prepare=_places_folder if kind == "folder" else _places, unprivileged=cls == "unreadable",
                                   fast=surface in FAST_PATHS_IN and cls in ("empty", "fifo", "device", "symlink_loop")))
    for surface, argv, flag, valid in NUMBERS:
        for cls, value in NUMBER_CLASSES.items():
            if cls not in valid:
                files = {"exp.yaml": "seed: 0\n"} if argv[:1] == ("run",) else {}
                out.append(SurfaceCase(f"{surface}/{cls}", (*argv, f"{flag}={value}"), files,
                                       fast=surface in FAST_NUMBERS and cls in ("zero", "huge", "non_finite", "wrong_type")))
    return out


def _places_folder(folder: Path) -> None:
    _places(folder, "folder")


def materialize(case: SurfaceCase, folder: Path) -> list[str]:
    """Write the case's files and places into ``folder``; its command line."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.prepare:
        case.prepare(folder)
    return [a.replace("{dir}", str(folder)) for a in case.argv]


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder`` (listed by root, so locked folders are listed too)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
