"""The timing runtime registry: a runtime is its class and one line in RUNTIMES; the CLI, tables and validation read it."""

import json
import platform

import pytest
import torch

from prunesearch.cli.main import main
from prunesearch.errors import InputError
from prunesearch.latency import load_table
from prunesearch.latency.backends import RUNTIMES, runtime_class, runtime_from_meta
from prunesearch.latency.runtime import HostTimer


class PythonCalls:
    """The smallest real runtime: a graph run is ``calls`` plain Python calls of the module, timed on the host clock."""

    name = "python"
    precisions = ("fp32",)
    on_gpu = False

    def __init__(self, calls: int = 1) -> None:
        self.calls = calls

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--python-calls", type=int, default=1, help="python: module calls per graph run")

    @classmethod
    def from_args(cls, args):
        return cls(args.python_calls)

    @classmethod
    def from_meta(cls, meta):
        return cls(meta["calls"])

    def check(self, clock):
        if self.calls < 1:
            raise InputError(f"--python-calls must be at least 1, got {self.calls}")

    def describe(self):
        return {"runtime": self.name, "runtime_version": platform.python_version(), "provider": "python calls",
                "precision": "fp32", "threads": torch.get_num_threads(), "calls": self.calls, "session": "torch.inference_mode"}

    def prepare(self, module, args, names, path):
        module = module.eval()

        def run():
            with torch.inference_mode():
                for _ in range(self.calls):
                    module(*args)

        return run

    def timer(self, clock):
        return HostTimer(clock)


def test_a_registered_runtime_is_offered_profiled_and_validated_then_gone_once_unregistered(tmp_path, capsys, monkeypatch):
    path = tmp_path / "py.yaml"
    with monkeypatch.context() as registered:
        registered.setitem(RUNTIMES, PythonCalls.name, PythonCalls)  # the one registration line
        with pytest.raises(SystemExit):
            main(["profile", "--help"])
        usage = capsys.readouterr().out
        assert "--runtime {onnxruntime,torch,python}" in usage and "--python-calls" in usage
        assert main(["profile", "--name", "py", "--preset", "small", "--runtime", "python", "--python-calls", "2",
                     "--rounds", "1", "--chain", "1", "--no-calibrate", "--out", str(path)]) == 0
        table = load_table(path)
        assert table.meta["runtime"] == "python" and table.meta["calls"] == 2 and table.meta["method"] == "measured"
        again = runtime_from_meta(table.meta)
        assert isinstance(again, PythonCalls) and again.calls == 2
        capsys.readouterr()
        assert main(["latency", "validate", "--target", str(path), "--samples", "1", "--rounds", "1", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["settings"]["runtime"] == "python" and len(report["rows"]) == 2

    assert "python" not in RUNTIMES and list(RUNTIMES) == ["onnxruntime", "torch"]
    with pytest.raises(SystemExit):
        main(["profile", "--name", "py", "--runtime", "python", "--out", str(tmp_path / "again.yaml")])
    assert "invalid choice: 'python'" in capsys.readouterr().err
    with pytest.raises(InputError) as err:
        runtime_from_meta(table.meta)
    assert str(err.value) == "meta.runtime: unknown timing runtime 'python'; registered runtimes: onnxruntime, torch"
    assert load_table(path).estimate(2, 1).per_frame_ms > 0  # pricing needs no runtime: the table still prices
    assert main(["latency", "validate", "--target", str(path), "--samples", "1", "--rounds", "1"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "table 'py': meta.runtime: unknown timing runtime 'python'" in line


def test_unknown_runtime_names_the_registered_ones():
    assert runtime_class("torch") is RUNTIMES["torch"]
    with pytest.raises(InputError, match=r"^--runtime: unknown timing runtime 'tensorrt'; registered runtimes: onnxruntime, torch$"):
        runtime_class("tensorrt")
