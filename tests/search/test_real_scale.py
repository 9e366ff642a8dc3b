"""The real job's parts on the CPU: devices and precision, crop geometry from checkpoints, the
restricted unpickler, and a rehearsal of a real-scale search (an OSTrack-format ViT-B teacher and
real-size JPEG frames) through ``checkpoint extract`` and ``prunesearch run``."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from prunesearch.checkpoints import extract, load_tracker, save_checkpoint
from prunesearch.cli.main import main
from prunesearch.data.got10k import read_got10k
from prunesearch.data.processing import CropGeometry
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.devices import resolve_device, resolve_precision, worker_device
from prunesearch.errors import PrunesearchError
from prunesearch.evaluation import evaluate
from prunesearch.models import build_teacher, get_preset
from prunesearch.training import FinetuneConfig, finetune
from tests.support.rehearsal import ostrack_state, write_got10k_folder, write_ostrack_checkpoint
from tests.support.tiny_models import OSTRACK_384_CROP, TINY_CFG



@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    params = SynthParams(width=96, height=72, min_frames=10, max_frames=12, min_size=12, max_size=20)
    return read_got10k(generate(tmp_path_factory.mktemp("rs"), 2, seed=2, split="train", params=params))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without a GPU")
@pytest.mark.parametrize("text", ["cuda", "cuda:3"])
def test_missing_gpu_is_one_line_naming_what_there_is(text):
    with pytest.raises(PrunesearchError, match=rf"--device '{text}' does not exist on this machine; available: cpu only"):
        resolve_device(text)


def test_device_and_precision_choices():
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(PrunesearchError, match=r"'gpu0' is not a device; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(PrunesearchError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(PrunesearchError, match="'fp8' is not a precision"):
        resolve_precision("fp8", cpu)
    assert worker_device("cpu", (), 3) == "cpu"


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--device", "cuda:7", "--sequences", "1"],
        ["teacher", "train", "--device", "tpu", "--steps", "1"],
        ["run", "--target", "orin-nx", "--budget", "9ms", "--device", "cuda:7"],
        ["run", "--target", "orin-nx", "--budget", "9ms", "--search-factor", "-1"],
        ["eval", "--precision", "fp16", "--device", "cpu", "--sequences", "1"],
    ],
)
def test_bad_device_precision_or_factor_is_one_line(args, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunesearch: error:") and "\n" not in err and "Traceback" not in err


def test_bf16_autocast_fine_tune_and_evaluation_on_cpu(tiny_data, one_torch_thread):
    torch.manual_seed(0)
    model = build_teacher(TINY_CFG)
    seen = []
    model.blocks[0].mlp.fc1.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    cfg = FinetuneConfig(steps=3, batch_size=2, log_every=1, warmup_steps=1, device="cpu", precision="bf16")
    result = finetune(model, tiny_data, cfg, teacher=build_teacher(TINY_CFG))
    assert result.status == "ok" and all(torch.isfinite(torch.tensor(m["loss"])) for m in result.losses)
    assert torch.bfloat16 in seen and next(model.parameters()).dtype == torch.float32
    seen.clear()
    scores = evaluate(model, tiny_data[:1], device="cpu", precision="bf16")
    assert 0 <= scores.ao <= 1 and seen and set(seen) == {torch.bfloat16}


def test_crop_geometry_travels_with_the_checkpoint(tmp_path):
    save_checkpoint(build_teacher(TINY_CFG), tmp_path / "t.pt", crop=OSTRACK_384_CROP)
    loaded = load_tracker(tmp_path / "t.pt", device="cpu")
    assert loaded.crop == OSTRACK_384_CROP and loaded.model.cfg == TINY_CFG and loaded.source_format == "prunesearch"
    save_checkpoint(build_teacher(TINY_CFG), tmp_path / "plain.pt")
    assert load_tracker(tmp_path / "plain.pt").crop is None
    assert OSTRACK_384_CROP.override(search_factor=4.5) == CropGeometry(2.0, 4.5)
    with pytest.raises(PrunesearchError, match="search_factor must be a number from 0.5 to 20"):
        CropGeometry(2.0, 0.0)


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecPayload(Payload):
    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [Payload, ExecPayload])
def test_extract_runs_none_of_the_files_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    net = ostrack_state(TINY_CFG)
    torch.save({"net": net, "settings": payload(marker), "optimizer": {"state": {}}}, tmp_path / "evil.pth.tar")
    out, left_out = extract(tmp_path / "evil.pth.tar", tmp_path / "net.pth")
    assert not marker.exists()
    kept = torch.load(out, weights_only=True)
    assert set(kept) == {"net"} and left_out == ["optimizer", "settings"]
    assert all(torch.equal(kept["net"][k], v) for k, v in net.items())
    # the payload is live: plain unpickling would have run it
    torch.load(tmp_path / "evil.pth.tar", weights_only=False)
    assert marker.exists()


def test_extract_keeps_the_settings_crop_factors(tmp_path, capsys):
    write_ostrack_checkpoint(tmp_path / "OSTrack_ep0300.pth.tar", TINY_CFG, OSTRACK_384_CROP)
    assert main(["checkpoint", "extract", str(tmp_path / "OSTrack_ep0300.pth.tar"), str(tmp_path / "net.pth")]) == 0
    assert "crop factors template 2, search 5" in capsys.readouterr().out
    loaded = load_tracker(tmp_path / "net.pth", num_heads=TINY_CFG.num_heads)
    assert loaded.crop == OSTRACK_384_CROP and loaded.source_format == "ostrack"
    assert loaded.model.kind == "joint" and loaded.model.cfg.embed_dim == TINY_CFG.embed_dim
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["checkpoint", "extract", str(tmp_path / "junk.pth"), str(tmp_path / "o.pth")]) == 2
    assert "cannot read" in capsys.readouterr().err


REHEARSAL = """
architecture: vit-b
space: {file: litetrack, depth: {min: 2, max: 3}, rules: [first]}
data: {train_sequences: 2, val_sequences: 1}
finetune: {steps: 3, batch_size: 2, log_every: 1, warmup_steps: 1, precision: bf16, loader_workers: 2}
search: {trials: 2, early_stop: false}
seed: 0
"""


@pytest.mark.slow
def test_rehearsal_of_a_real_scale_search_on_cpu(tmp_path):
    """OSTrack's training file of a ViT-B (random weights, crops cut to 64/128 px to fit a CPU test,
    search factor 5 in its settings), 1280x720 JPEG frames in GOT-10k's layout, extract, then run."""
    cfg = replace(get_preset("vit-b"), template_size=64, search_size=128)
    write_ostrack_checkpoint(tmp_path / "OSTrack_ep0300.pth.tar", cfg, OSTRACK_384_CROP)
    write_got10k_folder(tmp_path / "got10k", train=2, val=1, frames=8)
    (tmp_path / "rehearsal.yaml").write_text(REHEARSAL)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONPATH=os.getcwd(),
               OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "prunesearch"]
    subprocess.run([*cli, "checkpoint", "extract", "OSTrack_ep0300.pth.tar", "teacher.pth"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    (tmp_path / "OSTrack_ep0300.pth.tar").unlink()
    run = subprocess.run(
        [*cli, "run", "--experiment", "rehearsal.yaml", "--target", "orin-nx", "--budget", "9ms", "--teacher", "teacher.pth",
         "--data", "got10k", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "B2-1" in run.stdout and "B3-1" in run.stdout
    saved = sorted((tmp_path / "runs").rglob("B*-first.pt"))
    assert [p.name for p in saved] == ["B2-1-first.pt", "B3-1-first.pt"]
    student = load_tracker(saved[0])
    assert student.crop == OSTRACK_384_CROP and student.model.cfg.embed_dim == 768 and student.model.cfg.search_size == 128
    config = json.loads(next((tmp_path / "mlruns").rglob("config.json")).read_text()) if (tmp_path / "mlruns").exists() else None
    assert config is None or config["finetune"]["precision"] == "bf16"


def test_workers_take_one_gpu_each(monkeypatch):
    # The assignment rule alone, on a machine that claims three GPUs (no kernel runs).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "GPU")
    assert [worker_device("auto", (), i) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert [worker_device("cuda", (2, 0), i) for i in range(3)] == ["cuda:2", "cuda:0", "cuda:2"]
    assert worker_device("cuda:1", (), 2) == "cuda:1" and worker_device("cpu", (0, 1), 1) == "cpu"
    with pytest.raises(PrunesearchError, match=r"--gpus 'cuda:5' does not exist on this machine; available: cpu, cuda:0 \(GPU\)"):
        from prunesearch.devices import parse_gpus

        parse_gpus("0,5")
