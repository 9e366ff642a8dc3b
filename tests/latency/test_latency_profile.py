"""Profiling and validating on this machine: small graphs, very few runs.

Timings themselves are not asserted (the machine may be busy); the tests check that a measured
table is complete, self-consistent and honest about how it was made, and that validation compares
the right numbers.
"""

import json
from dataclasses import replace

import mlflow
import numpy as np
import onnxruntime as ort
import pytest
import torch

from prunesearch.cli.main import main
from prunesearch.errors import PrunesearchError
from prunesearch.latency import load_table
from prunesearch.latency.parts import BLOCK_KINDS, part_graph, part_shapes
from prunesearch.latency.backends import OnnxRuntimeSettings, TorchSettings, runtime_from_meta
from prunesearch.latency.profiler import ProfileRequest, calibration_models, profile
from prunesearch.latency.runtime import HostTimer, TimingPlan, machine_fingerprint, time_graphs
from prunesearch.latency.validate import ValidationRow, check_validatable, fingerprint_mismatch, sample_candidates, summarise
from prunesearch.models import get_preset


@pytest.fixture(scope="module")
def tiny_cfg():
    """The small preset with a 3-block teacher: every graph exports quickly."""
    return replace(get_preset("small"), depth=3)


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_cfg):
    request = ProfileRequest("tiny-cpu", tiny_cfg, OnnxRuntimeSettings(threads=1), TimingPlan(rounds=2), chain=2, calibrate=False)
    return profile(request).save(tmp_path_factory.mktemp("profile") / "tiny-cpu.yaml")


def test_profile_command_writes_the_table(tmp_path, small_cfg):
    path = tmp_path / "latency_models" / "small-cpu.yaml"
    assert main(["profile", "--name", "small-cpu", "--preset", "small", "--rounds", "1", "--chain", "1",
                 "--threads", "1", "--clock", "cpu", "--no-calibrate", "--out", str(path)]) == 0
    table = load_table(path)
    assert table.name == "small-cpu" and table.architecture == small_cfg
    assert table.meta["clock"] == "cpu" and table.provenance["chain"] == 1 and table.provenance["preset"] == "small"


def test_profile_writes_a_complete_measured_table(measured, tiny_cfg):
    table = load_table(measured)
    assert table.name == "tiny-cpu"
    assert table.architecture == tiny_cfg
    assert table.meta["method"] == "measured"
    assert table.meta["provider"] == "CPUExecutionProvider" and table.meta["threads"] == 1
    assert table.meta["runtime_version"] == ort.__version__
    assert table.meta["machine_fingerprint"] == machine_fingerprint()
    assert [e.kind for e in table.entries] == list(part_shapes(tiny_cfg))
    for entry in table.entries:
        assert set(entry.stats) == {"mean", "p50", "p90", "p99", "runs"}
        assert entry.ms == entry.stats["p50"] >= 0
        assert entry.stats["runs"] >= 2
    graphs = table.provenance["graphs"]
    overhead = graphs["fixed"]["p50"]
    for kind in BLOCK_KINDS:  # a chain of 2 blocks, less one run's overhead, per block
        assert table.costs()[kind] == pytest.approx(max(graphs[kind]["p50"] - overhead, 0) / 2, abs=1e-5)
    assert table.provenance["chain"] == 2
    table.estimate(3, 1)


def test_existing_table_needs_force(measured):
    with pytest.raises(PrunesearchError, match="--force"):
        main_raising(["profile", "--name", "x", "--preset", "small", "--out", str(measured)])


def main_raising(argv):
    """Run a command's function directly, so its PrunesearchError reaches the test."""
    from prunesearch.cli.main import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_validate_compares_whole_graphs_with_the_table(measured, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    capsys.readouterr()
    code = main(["latency", "validate", "--target", str(measured), "--samples", "1", "--rounds", "2", "--json", "--mlflow"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in report["rows"]]
    assert len(names) == 2 and names[-1] == "teacher"
    table = load_table(measured)
    for row in report["rows"]:
        expected = table.estimate_teacher() if row["ai_layers"] is None else table.estimate(row["depth"], row["ai_layers"])
        assert row["estimate_ms"] == pytest.approx(expected.per_frame_ms)
        assert row["error"] == pytest.approx((row["estimate_ms"] - row["measured_ms"]) / row["measured_ms"])
    assert report["settings"]["threads"] == 1
    run = mlflow.get_run(report["mlflow_run_id"])
    assert run.data.params["table"] == "tiny-cpu"
    assert run.data.metrics["within_10pct"] == pytest.approx(report["summary"]["within_10pct"])


def test_summary_statistics():
    rows = [ValidationRow(f"m{i}", i + 1, 1, est, meas, meas, 1, est) for i, (est, meas) in
            enumerate([(1.0, 1.0), (2.09, 2.0), (3.0, 3.2), (5.0, 4.0)])]
    s = summarise(rows)
    assert s["within_5pct"] == pytest.approx(0.5)
    assert s["within_10pct"] == pytest.approx(0.75)
    assert s["mape_pct"] == pytest.approx(100 * (0 + 0.045 + 0.0625 + 0.25) / 4)
    assert s["kendall_tau"] == pytest.approx(1.0)


def test_candidate_sample_is_reproducible_and_valid():
    a = sample_candidates(12, 10, seed=3)
    assert a == sample_candidates(12, 10, seed=3) and len(set(a)) == 10
    assert all(1 <= m <= n <= 12 for n, m in a)
    assert len(sample_candidates(3, 100, seed=0)) == 6


def test_derived_and_foreign_tables_cannot_be_validated_here(measured, tmp_path):
    with pytest.raises(PrunesearchError, match="derived from published figures"):
        check_validatable(load_table("orin-nx"), allow_other_machine=False)
    text = measured.read_text().replace(machine_fingerprint(), "0123456789abcdef")
    other = tmp_path / "other.yaml"
    other.write_text(text)
    with pytest.raises(PrunesearchError, match="another machine"):
        check_validatable(load_table(other), allow_other_machine=False)
    check_validatable(load_table(other), allow_other_machine=True)
    assert fingerprint_mismatch(load_table(measured)) is None
    line = fingerprint_mismatch(load_table(other))
    assert "fingerprint 0123456789abcdef" in line and "GPU none" in line and "\n" not in line


def test_unavailable_provider_is_one_line_listing_the_available():
    with pytest.raises(PrunesearchError) as err:
        OnnxRuntimeSettings("TensorrtExecutionProvider").check("wall")
    msg = str(err.value)
    assert "\n" not in msg and "CPUExecutionProvider" in msg and "TensorrtExecutionProvider" in msg


def test_cpu_clock_needs_one_thread():
    with pytest.raises(PrunesearchError, match="--threads 1"):
        OnnxRuntimeSettings(threads=2).check("cpu")
    OnnxRuntimeSettings(threads=1).check("cpu")
    with pytest.raises(PrunesearchError, match="--threads 1"):
        TorchSettings(threads=2).check("cpu")


def test_fp16_graphs_take_and_give_half_precision(small_cfg, tmp_path):
    settings = OnnxRuntimeSettings(precision="fp16", threads=1)
    module, args, inputs, outputs = part_graph(small_cfg, "search_block", repeat=1)
    run = settings.prepare(module, args, (inputs, outputs), tmp_path / "b.onnx")
    run()
    (out,) = run.outputs()  # bound through IOBinding, as on a GPU
    assert out.dtype == np.float16 and out.shape == (1, small_cfg.search_tokens, small_cfg.embed_dim)


@pytest.mark.parametrize(
    "settings, message",
    [
        (TorchSettings(mode="cuda-graph"), "needs a CUDA device"),
        (TorchSettings(mode="warp"), "--mode must be one of"),
        (TorchSettings(precision="fp8"), "precision must be one of"),
        (TorchSettings(device="tpu"), "--torch-device must be"),
        (OnnxRuntimeSettings(precision="bf16"), "onnxruntime precision"),
    ],
)
def test_backends_refuse_what_this_machine_cannot_run(settings, message):
    if "CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(PrunesearchError, match=message):
        settings.check("wall")


class CountingTimer:
    """A timer whose clock is a counter: each run takes exactly 2 ms, whatever the machine does."""

    def __init__(self):
        self.runs = 0

    def __call__(self, run):
        run()
        self.runs += 1
        return 2.0


def test_interleaved_timing_goes_through_the_timer_seam():
    calls = {"a": 0, "b": 0}
    graphs = {name: (lambda n=name: calls.__setitem__(n, calls[n] + 1)) for name in calls}
    timer = CountingTimer()
    timings = time_graphs(graphs, TimingPlan(rounds=3, round_ms=5, warmup_runs=2), timer)
    # per graph: one untimed first run, 2 warm-up runs, 3 rounds of round(5 / 2) = 2 runs
    assert calls == {"a": 9, "b": 9} and timer.runs == 16
    assert all(t.samples == [2.0] * 6 and t.stats()["p99"] == 2.0 for t in timings.values())
    assert HostTimer("wall")(lambda: None) >= 0


def test_calibration_models_spread_over_the_space():
    assert calibration_models(12) == [(1, 1), (4, 2), (6, 3), (9, 3), (12, 6), (12, None)]
    assert calibration_models(3) == [(1, 1), (2, 1), (3, 1), (3, None)]


@pytest.fixture(scope="module")
def torch_measured(tmp_path_factory, tiny_cfg):
    request = ProfileRequest("tiny-torch", tiny_cfg, TorchSettings("eager", "fp32", "cpu", threads=1), TimingPlan(rounds=2), chain=2)
    return profile(request).save(tmp_path_factory.mktemp("profile") / "tiny-torch.yaml")


def test_torch_backend_profiles_eager_on_cpu_with_a_calibration(torch_measured, tiny_cfg):
    table = load_table(torch_measured)
    assert table.meta["runtime"] == "torch" and table.meta["runtime_version"] == torch.__version__
    assert table.meta["mode"] == "eager" and table.meta["torch_device"] == "cpu" and table.meta["threads"] == 1
    assert [e.kind for e in table.entries] == list(part_shapes(tiny_cfg))
    assert all(e.ms == e.stats["p50"] >= 0 and e.stats["runs"] >= 2 for e in table.entries)
    cal = table.calibration
    assert [g["name"] for g in cal.graphs] == ["B1-1", "B2-1", "B3-1", "teacher"]
    assert min(cal.graph_ms, cal.block_scale, cal.other_scale) >= 0
    graphs = table.provenance["graphs"]
    for g in cal.graphs:
        assert g["measured_ms"] == pytest.approx(graphs[f"whole:{g['name']}"]["p50"], abs=1e-5)
        n, m = (3, None) if g["name"] == "teacher" else map(int, g["name"][1:].split("-"))
        raw = table.uncalibrated().estimate_teacher() if m is None else table.uncalibrated().estimate(n, m)
        assert g["raw_ms"] == pytest.approx(raw.per_frame_ms, abs=1e-5)
        est = table.estimate_teacher() if m is None else table.estimate(n, m)
        assert est.per_frame_ms == pytest.approx(g["calibrated_ms"], abs=1e-4)
    assert isinstance(runtime_from_meta(table.meta), TorchSettings)


def test_a_calibration_that_gives_blocks_no_cost_is_not_written(tmp_path, tiny_cfg, monkeypatch):
    """Timing noise on a busy machine can make the whole graphs look flat in depth; the table then
    keeps its measured parts uncalibrated (and says so) rather than price every depth alike."""
    from prunesearch.errors import PrunesearchWarning
    from prunesearch.latency import profiler

    real = profiler.fit_calibration
    monkeypatch.setattr(profiler, "fit_calibration", lambda graphs: replace(real(graphs), block_scale=0.0))
    request = ProfileRequest("flat", tiny_cfg, TorchSettings("eager", "fp32", "cpu", threads=1), TimingPlan(rounds=1), chain=1)
    with pytest.warns(PrunesearchWarning, match="do not grow with depth"):
        table = profile(request)
    assert table.calibration is None
    assert load_table(table.save(tmp_path / "flat.yaml")).calibration is None


def test_torch_table_validates_through_the_same_backend(torch_measured, capsys):
    capsys.readouterr()
    assert main(["latency", "validate", "--target", str(torch_measured), "--samples", "1", "--rounds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["runtime"] == "torch" and report["calibrated"] is True
    assert set(report["raw_summary"]) == set(report["summary"])
    for row in report["rows"]:
        assert row["raw_error"] == pytest.approx((row["raw_estimate_ms"] - row["measured_ms"]) / row["measured_ms"])


def test_gpu_facts_are_read_from_nvidia_smi_and_nvpmodel(tmp_path, monkeypatch):
    """Stand-in tools on PATH print what the real ones print on an Orin NX; the parsers take them apart."""
    from prunesearch.latency.runtime import jetson_power_mode, nvidia_smi_facts

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {
        "nvidia-smi": "echo 'Orin (nvgpu), 540.4.0, 918 MHz, 3199 MHz, 306 MHz, [N/A], Enabled'",
        "nvpmodel": "printf 'NV Power Mode: MAXN\\n0\\n'",
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    facts = nvidia_smi_facts()
    assert facts["name"] == "Orin (nvgpu)" and facts["driver_version"] == "540.4.0"
    assert facts["clocks_max_sm"] == "918 MHz" and facts["power_limit"] == "[N/A]" and facts["persistence_mode"] == "Enabled"
    assert jetson_power_mode() == "NV Power Mode: MAXN 0"
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert nvidia_smi_facts() == {} and jetson_power_mode() is None
