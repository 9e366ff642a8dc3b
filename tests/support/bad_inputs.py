"""The bad inputs a careless or hostile user gives the CLI, one row each: the fuzzing battery's table.

tests/cli/test_bad_inputs.py runs every row in-process and asserts one error line, a non-zero exit, no
traceback and no file left behind; benchmarks/bad_input_battery.py runs the same rows as real
subprocesses under a time and memory limit and records the figures. ``{dir}`` in an argument is
the case's own folder (also the working folder); ``files`` are written there first, and
``prepare`` (a name in PREPARE) builds what text cannot (a dataset, a checkpoint).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tiny_datasets import write_got10k

RUN = ("run", "--experiment", "{dir}/exp.yaml", "--target", "orin-nx", "--budget", "1000ms")
# Aliases of aliases, all inside one value: nine levels of ten make 10^9 strings from 500 bytes.
LAUGHS = "[&a0 [lol], " + ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)) + "]"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    expect: str  # a regex the one error line must match
    files: dict[str, str | bytes] = field(default_factory=dict)
    prepare: str | None = None


def _experiment(text: str | bytes) -> dict[str, str | bytes]:
    return {"exp.yaml": text}


def _bomb_under(key: str) -> str:
    """A billion laughs as the value of ``key`` (``a.b`` for a nested key)."""
    outer, _, inner = key.partition(".")
    return f"{outer}: {{{inner}: {LAUGHS}}}\n" if inner else f"{outer}: {LAUGHS}\n"


def _dataset(folder: Path) -> Path:
    root = folder / "got"
    write_got10k(root, "train", sequences=2, frames=4)
    write_got10k(root, "val", sequences=2, frames=4)
    return root


def _truncated_jpeg(folder: Path) -> None:
    frame = _dataset(folder) / "val" / "GOT-10k_Val_000001" / "00000003.jpg"
    frame.write_bytes(frame.read_bytes()[:200])


def _not_an_image(folder: Path) -> None:
    (_dataset(folder) / "train" / "GOT-10k_Train_000002" / "00000004.jpg").write_text("not an image\n")


def _nan_checkpoint(folder: Path) -> None:
    import torch

    from prunesearch.checkpoints import save_checkpoint
    from prunesearch.models import build_teacher, get_preset

    model = build_teacher(get_preset("small"))
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_checkpoint(model, folder / "nan.pt")


PREPARE: dict[str, Callable[[Path], None]] = {
    "truncated_jpeg": _truncated_jpeg,
    "not_an_image": _not_an_image,
    "nan_checkpoint": _nan_checkpoint,
}

CASES = (
    # Experiment files the reader must refuse, each within a second.
    Case("not_utf8", RUN, r"exp.yaml: not UTF-8", _experiment(b"seed: 0\ndescription: caf\xe9\n")),
    Case("nesting_20000", RUN, r"nested more than 32 levels", _experiment("description: " + "[" * 20000 + "]" * 20000)),
    Case("laughs_seed", RUN, r"refused.*more than 64 aliases", _experiment(_bomb_under("seed"))),
    Case("laughs_description", RUN, r"refused.*more than 64 aliases", _experiment(_bomb_under("description"))),
    Case("laughs_threads", RUN, r"refused.*more than 64 aliases", _experiment(_bomb_under("finetune.threads"))),
    Case("laughs_848_bytes", RUN, r"description: expected a string, got \[\[.{0,80}$",
         _experiment("description: [&a [x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b],\n"
                     "  &d [*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d]]\narchitecture: *e\n")),
    Case("laughs_wide", RUN, r"expands to more than 100000 values",
         _experiment("description: [&a [" + ",".join(["x"] * 900) + "], &b [" + ",".join(["*a"] * 60) + "], [*b, *b]]\n")),
    Case("laughs_deep", RUN, r"nested, through aliases, more than 32 levels deep",
         _experiment("description: [" + ", ".join(f"&a{i} " + "[" * 20 + (f"*a{i - 1}" if i else "x") + "]" * 20
                                                 for i in range(40)) + "]\n")),
    Case("many_aliases", RUN, r"more than 64 aliases", _experiment("a: &a 1\nb: [" + ", ".join(["*a"] * 100) + "]\n")),
    Case("recursive_alias", RUN, r"alias refers to a node that contains it", _experiment("description: &a [*a]\n")),
    Case("huge_integer", RUN, r"exp.yaml: is not valid YAML", _experiment("seed: " + "9" * 5000 + "\n")),
    Case("over_1_mib", RUN, r"larger than 1024 KiB", _experiment("# " + "x" * (1 << 20) + "\n")),
    Case("empty_file", RUN, r"exp.yaml: the file is empty", _experiment("")),
    Case("comments_only", RUN, r"exp.yaml: the file is empty", _experiment("# nothing here\n")),
    Case("top_level_list", RUN, r"expected a mapping of keys", _experiment("- 1\n")),
    Case("unknown_key", RUN, r"exp.yaml: serch: unknown key", _experiment("serch: {trials: 3}\n")),
    # Values that used to pass the reader and crash at the first fine-tune.
    Case("weight_decay_nan", RUN, r"finetune.weight_decay: expected a finite number >= 0 \(default 0.0001\), got nan",
         _experiment("finetune: {weight_decay: .nan}\n")),
    Case("lr_inf", RUN, r"finetune.lr: expected a finite number > 0 \(default 0.0004\), got inf", _experiment("finetune: {lr: .inf}\n")),
    Case("threads_abc", RUN, r"finetune.threads: expected a whole number", _experiment("finetune: {threads: abc}\n")),
    Case("threads_negative", RUN, r"finetune.threads: expected a whole number from 1 to 1024, got -4",
         _experiment("finetune: {threads: -4}\n")),
    Case("log_every_zero", RUN, r"finetune.log_every: expected a whole number >= 1 \(default 10\), got 0",
         _experiment("finetune: {log_every: 0}\n")),
    Case("steps_fraction", RUN, r"finetune.steps: expected a whole number >= 1 \(default 200\), got 1.5", _experiment("finetune: {steps: 1.5}\n")),
    Case("flip_prob_above_1", RUN, r"finetune.augment.flip_prob: expected a finite number from 0 to 1",
         _experiment("finetune: {augment: {flip_prob: 2}}\n")),
    Case("seed_too_big", RUN, r"seed: expected a whole number from 0 to 4294967295", _experiment("seed: 4294967296\n")),
    Case("val_sequences_huge", RUN, r"data.val_sequences: expected at most 1000 for built-in data",
         _experiment("data: {val_sequences: 100000000}\n")),
    Case("trials_zero", RUN, r"search.trials: expected a whole number >= 1 or auto, got 0", _experiment("search: {trials: 0}\n")),
    Case("bad_frames_setting", RUN, r"data.bad_frames: expected one of error, skip", _experiment("data: {bad_frames: ignore}\n")),
    Case("seed_outside_space", RUN, r"search.seeds: B99-3/first not in the space", _experiment("search: {seeds: [B99-3]}\n")),
    # Constraints: parsed by the space's own grammar, never evaluated by Python.
    Case("constraint_tuple_bomb", RUN, r"constraint .*cannot read",
         _experiment("space: {file: litetrack, constraints: ['(1,)*100000000000 == depth']}\n")),
    Case("constraint_not_3000", RUN, r"longer than 200 characters",
         _experiment("space: {file: litetrack, constraints: ['" + "not " * 3000 + "depth']}\n")),
    Case("constraint_deep_brackets", RUN, r"nested more than 16 deep",
         _experiment("space: {file: litetrack, constraints: ['" + "(" * 30 + "depth" + ")" * 30 + "']}\n")),
    Case("constraint_divide_by_zero", RUN, r"'depth // 0 == 1' divides by zero for depth=1",
         _experiment("space: {file: litetrack, constraints: ['depth // 0 == 1']}\n")),
    Case("constraint_power", RUN, r"constraint 'depth \*\* 99 > 1': unexpected '\*'",
         _experiment("space: {file: litetrack, constraints: ['depth ** 99 > 1']}\n")),
    Case("constraint_call", RUN, r"constraint '__import__\(.*cannot read '.getpid",
         _experiment("space: {file: litetrack, constraints: ['__import__(\"os\").getpid() > 0']}\n")),
    Case("constraint_unknown_name", RUN, r"unknown name 'width'; allowed: depth, ai_layers",
         _experiment("space: {file: litetrack, constraints: ['depth > width']}\n")),
    Case("constraint_big_literal", RUN, r"more than 6 digits",
         _experiment("space: {file: litetrack, constraints: ['depth < 99999999999999']}\n")),
    # The command line.
    Case("seed_minus_1", (*RUN, "--seed=-1"), r"--seed: expected a whole number from 0 to 4294967295", _experiment("seed: 0\n")),
    Case("workers_1000", (*RUN, "--workers", "1000"), r"--workers: 1000 worker processes on \d+ CPUs", _experiment("seed: 0\n")),
    Case("workers_in_file", RUN, r"search.workers: 1000 worker processes on \d+ CPUs", _experiment("search: {workers: 1000}\n")),
    Case("trials_cli_zero", (*RUN, "--trials", "0"), r"--trials: expected a whole number >= 1", _experiment("seed: 0\n")),
    Case("trials_cli_word", (*RUN, "--trials", "all"), r"--trials: expected a whole number >= 1 or auto, got .all.", _experiment("seed: 0\n")),
    Case("trials_file_word", RUN, r"search.trials: expected a whole number >= 1 or auto, got 'al'", _experiment("search: {trials: al}\n")),
    Case("storage_empty", (*RUN, "--storage", ""), r"--storage: must not be empty", _experiment("seed: 0\n")),
    Case("budget_overflow", ("run", "--experiment", "{dir}/exp.yaml", "--target", "orin-nx", "--budget", "9" * 400 + "ms"),
         r"cannot read the budget", _experiment("seed: 0\n")),
    Case("budget_huge", ("run", "--experiment", "{dir}/exp.yaml", "--target", "orin-nx", "--budget", "9" * 60 + "ms"),
         r"give one from 1e-06 ms to 3600000 ms", _experiment("seed: 0\n")),
    Case("budget_zero_fps", ("run", "--experiment", "{dir}/exp.yaml", "--target", "orin-nx", "--budget", "0fps"),
         r"must be greater than zero", _experiment("seed: 0\n")),
    Case("plot_missing_folder", ("pareto", "--plot", "{dir}/no/such/dir/x.png"), r"--plot .*folder .*no/such/dir does not exist"),
    Case("export_out_is_file", ("export", "--out", "{dir}/existing.txt"), r"--out .*existing.txt is a file",
         {"existing.txt": "keep me\n"}),
    # Data and models checked when they are opened.
    Case("truncated_jpeg_eval", ("eval", "--data", "{dir}/got", "--split", "val"), r"00000003.jpg is truncated",
         prepare="truncated_jpeg"),
    Case("truncated_jpeg_run", (*RUN, "--data", "{dir}/got"), r"00000003.jpg is truncated", _experiment("seed: 0\n"),
         prepare="truncated_jpeg"),
    Case("not_an_image_train", (*RUN, "--data", "{dir}/got"), r"00000004.jpg is not a JPG image", _experiment("seed: 0\n"),
         prepare="not_an_image"),
    Case("nan_weights_eval", ("eval", "--checkpoint", "{dir}/nan.pt"),
         r"nan.pt: tensor .* holds NaN or infinite values", prepare="nan_checkpoint"),
    Case("nan_weights_inspect", ("inspect", "--checkpoint", "{dir}/nan.pt", "--no-fvcore"),
         r"nan.pt: tensor .* holds NaN or infinite values", prepare="nan_checkpoint"),
)


def materialize(case: Case, folder: Path) -> list[str]:
    """Write the case's files into ``folder`` and return its command line."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.prepare:
        PREPARE[case.prepare](folder)
    return [a.replace("{dir}", str(folder)) for a in case.argv]


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _timeout(signum, frame):  # noqa: ARG001 - the signal handler's signature
    raise TimeoutError(f"still running after {SECONDS} s")


SECONDS = 20  # a case that reads a FIFO or /dev/zero would never end: fail it instead


def one_line_error(argv: list[str], folder: Path, monkeypatch, capsys) -> str:
    """Run ``prunesearch argv`` in-process in ``folder`` (MLflow store and data cache inside it) and
    return its one error line, asserting a non-zero exit, one line on stderr and no traceback
    (no exception escaping ``main``), nothing on stdout, nothing left behind, within :data:`SECONDS`."""
    from prunesearch.cli import main

    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(folder / "cache"))
    before = snapshot(folder)
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SECONDS)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), f"accepted silently: {out[-300:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {err[-600:]}"
    assert len(lines[0]) <= 600
    assert out == ""
    assert snapshot(folder) == before, f"left behind: {sorted(snapshot(folder) - before)}"
    return lines[0]
