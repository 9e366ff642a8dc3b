"""Timing exported graphs on a device: the runner, here and over a real OpenSSH server, and what can go wrong.

The "device" is this machine behind a real ``sshd`` on 127.0.0.1 (tests/support/ssh_server.py); its side
runs this test environment's python, given as the job's python command because sshd hands the
session a clean PATH. Faults are real too: a closed port, a key not in authorized_keys, a python
that is too old or cannot import onnxruntime, a killed sshd session, a runner printing garbage.
After each case the device's temporary folder must be empty.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.exported_graphs import TINY, tiny_teacher_graphs
from prunesearch.errors import DeviceError, InputError
from prunesearch.export import export_tracker
from prunesearch.latency.derive import read_measured
from prunesearch.latency.registry import load_table
from prunesearch.models.vit_tracker import StudentSpec, build_student
from prunesearch.verify import DeviceReport, Job, ModelGraphs, SshTarget, fact_warnings, run_local, run_ssh
from prunesearch.verify import device_runner
from prunesearch.verify.device_runner import parse_jetson_clocks, parse_nvpmodel
from prunesearch.verify.report import parse_output
from tests.support.servers import free_port
from tests.support.ssh_server import SshServer

servers = pytest.mark.servers
needs_sshd = pytest.mark.skipif(not SshServer.available(), reason="OpenSSH server not installed (apt-get install openssh-server)")

# Documented output of the Jetson tools (L4T 35, Orin NX): power mode MAXN, clocks not locked.
NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"
JETSON_CLOCKS_SHOW = """SOC family:tegra234  Machine:NVIDIA Orin NX Developer Kit
Online CPUs: 0-7
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1984000 CurrentFreq=1984000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1984000 CurrentFreq=729600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=918000000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=0
FAN Dynamic Speed control=active hwmon1_pwm=34
NV Power Mode: MAXN
"""


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[ModelGraphs, ...]:
    """The tiny teacher and a tiny B1-1 student, each as its exported template/frame pair."""
    _, teacher = tiny_teacher_graphs()
    student = tmp_path_factory.mktemp("B1-1")
    export_tracker(build_student(TINY, StudentSpec(1, 1)).eval(), student)
    return ModelGraphs.from_dir("teacher", teacher), ModelGraphs.from_dir("B1-1", student)


@pytest.fixture(scope="module")
def sshd():
    server = SshServer.start()
    yield server
    server.stop()


@pytest.fixture
def device(sshd):
    """The server, and after the test: nothing left in the device's temporary folder."""
    yield sshd
    assert os.listdir(sshd.tmp) == []


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def job_for(graphs, **settings) -> Job:
    return Job(graphs, threads=1, python=sys.executable, **settings)


# ---------------------------------------------------------------- over a real sshd


@servers
@needs_sshd
def test_local_and_ssh_time_the_same_models_alike(graphs, device):
    job = job_for(graphs, runs=300, clock="cpu")  # CPU time: what an idle machine sees, so a busy one compares too
    here = run_local(job)
    there = run_ssh(device.host, job, **device.client())
    assert [m.name for m in here.models] == [m.name for m in there.models] == ["teacher", "B1-1"]
    assert here.where == "this machine" and there.where == device.host
    for a, b in zip(here.models, there.models):
        assert a.runs == b.runs == 300 and a.graph_model == b.graph_model == a.name
        assert 0 < a.p50 <= a.p90 <= a.p99 and a.template_ms > 0
        assert 1 / 3 < a.p50 / b.p50 < 3, (a, b)  # the same machine: within noise
        assert b.session["provider"] == "CPUExecutionProvider" and b.session["precision"] == "fp32"
    assert there.device["onnxruntime"] == here.device["onnxruntime"]
    assert there.device["cores"] == os.cpu_count() and there.settings["threads_used"] == 1


@servers
@needs_sshd
def test_unreachable_host_is_one_line(graphs, device):
    with pytest.raises(DeviceError, match=r"^cannot reach 127.0.0.1:\d+ over ssh \(.*Connection refused\): check the host"):
        run_ssh(f"127.0.0.1:{free_port()}", job_for(graphs), **device.client())


@servers
@needs_sshd
def test_refused_key_says_to_install_it(graphs, device):
    with pytest.raises(DeviceError, match=r"refused the login \(.*Permission denied \(publickey\).*\): .*ssh-copy-id -p \d+ "):
        run_ssh(device.host, job_for(graphs), **device.client(device.other_key))


@servers
@needs_sshd
@pytest.mark.parametrize("python, message", [
    ("/nonexistent/python3", r"^no /nonexistent/python3 on .*not found.*: install python3 >= 3.8"),
    ("OLD", r"python3 on .* is Python 3.6.9; the runner needs python >= 3.8: install a newer python3"),
])
def test_device_python_missing_or_too_old(graphs, device, tmp_path, python, message):
    if python == "OLD":
        python = str(script(tmp_path, "python3", "#!/bin/sh\necho 'Python 3.6.9'\n"))
    with pytest.raises(DeviceError, match=message):
        run_ssh(device.host, Job(graphs, python=python), **device.client())


@servers
@needs_sshd
def test_device_without_onnxruntime_says_pip_install(graphs, device, tmp_path):
    # A real python whose import of onnxruntime fails as on a device without it.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None\n")
    job = Job(graphs, python=f"env PYTHONPATH={tmp_path} {sys.executable}")
    with pytest.raises(DeviceError, match=r"^onnxruntime cannot be imported by .* on .*127.0.0.1:\d+ .*: pip install onnxruntime \(CPU\) "
                                          r"or onnxruntime-gpu"):
        run_ssh(device.host, job, **device.client())


def _runners(tmp: Path) -> list[int]:
    """Runner processes working in a folder under ``tmp``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"runner.py" in (entry / "cmdline").read_bytes() and \
                    os.readlink(entry / "cwd").startswith(str(tmp)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait(condition, timeout: float = 15.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@servers
@needs_sshd
def test_cut_connection_leaves_nothing_on_the_device(graphs, device):
    outcome: list[BaseException] = []

    def verify() -> None:
        try:
            run_ssh(device.host, job_for(graphs[:1], runs=10**7), **device.client())
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=verify)
    thread.start()
    assert _wait(lambda: _runners(device.tmp)), "the runner never started"
    (folder,) = device.tmp.iterdir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.name.startswith("prunesearch-verify.")
    assert device.cut() >= 1
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DeviceError), outcome
    assert "was cut while the runner ran" in str(outcome[0]) and "nothing was recorded" in str(outcome[0])
    assert _wait(lambda: not _runners(device.tmp)), "the runner outlived its connection"


@servers
@needs_sshd
def test_run_over_its_time_limit_is_stopped_and_cleaned_up(graphs, device):
    with pytest.raises(DeviceError, match=r"took over 2 s and was stopped; nothing was recorded"):
        run_ssh(device.host, job_for(graphs[:1], runs=10**7), timeout_s=2, **device.client())
    assert _wait(lambda: not _runners(device.tmp)), "the runner outlived its connection"


@servers
@needs_sshd
def test_runner_printing_garbage_is_one_line(graphs, device, tmp_path):
    job = job_for(graphs, runner=script(tmp_path, "garbage.py", "print('hello from a broken runner')\n"))
    with pytest.raises(DeviceError, match=r"printed something that is not its JSON report \(hello from a broken runner\)"):
        run_ssh(device.host, job, **device.client())
    with pytest.raises(DeviceError, match=r"on this machine printed something that is not its JSON report"):
        run_local(job)


@servers
@needs_sshd
def test_jetson_facts_are_read_and_a_power_mode_mismatch_warned(graphs, device, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    script(tools, "nvpmodel", f"#!/bin/sh\ncat <<'EOF'\n{NVPMODEL_Q}EOF\n")
    script(tools, "jetson_clocks", f"#!/bin/sh\n[ \"$1\" = --show ] || exit 1\ncat <<'EOF'\n{JETSON_CLOCKS_SHOW}EOF\n")
    job = Job(graphs[:1], runs=20, warmup=2, threads=1, clock="cpu", python=f"env PATH={tools}:$PATH {sys.executable}")
    report = run_ssh(device.host, job, **device.client())
    jetson = report.device["jetson"]
    assert jetson["power_mode"] == "MAXN" and jetson["power_mode_id"] == 0
    assert jetson["clocks"]["locked"] is False and jetson["clocks"]["unlocked"] == ["cpu0", "cpu1", "GPU"]
    meta = {"device": report.device["name"], "runtime": "onnxruntime", "provider": "CPUExecutionProvider",
            "precision": "fp32", "power_mode": "15W"}
    lines = fact_warnings(report, meta)
    assert lines[0].startswith("power mode MAXN on the device, 15W in the table: latency can differ 2x")
    assert lines[1].startswith("clocks are not locked on the device (cpu0, cpu1, GPU below") and "sudo jetson_clocks" in lines[1]
    assert len(lines) == 2


# ---------------------------------------------------------------- without a server


def test_runner_is_one_standalone_file_for_python_3_8():
    source = Path(device_runner.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "tensorrt"}, imported


def test_local_run_writes_what_latency_derive_reads(graphs, tmp_path):
    report = run_local(job_for(graphs, runs=30, warmup=3))
    again = DeviceReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    measured = read_measured(report.write_measured(tmp_path / "measured.yaml", statistic="p99"))
    assert measured.statistic == "p99" and measured.runtime == "onnxruntime" and measured.precision == "fp32"
    assert measured.device == report.device["name"] and measured.provider == "CPUExecutionProvider"
    assert report.settings["clock"] == "wall"
    fps = {v.name: v.fps["measured"] for v in measured.variants}
    assert fps == pytest.approx({m.name: 1000 / m.p99 for m in report.models}, rel=1e-5)


@pytest.mark.parametrize("text, destination, port", [
    ("jetson", "jetson", None),
    ("me@jetson", "me@jetson", None),
    ("me@10.0.0.7:2222", "me@10.0.0.7", 2222),
    ("me@[fe80::1]:22", "me@fe80::1", 22),
    ("fe80::1", "fe80::1", None),
])
def test_host_strings(text, destination, port):
    assert SshTarget.parse(text) == SshTarget(destination, port)


@pytest.mark.parametrize("text", ["", "-oProxyCommand=x", "me@host:99999", "me@host:ssh", "a b"])
def test_bad_host_strings_are_refused(text):
    with pytest.raises(InputError, match=r"--host"):
        SshTarget.parse(text)


def test_jetson_tool_output_is_parsed():
    assert parse_nvpmodel(NVPMODEL_Q) == {"mode": "MAXN", "id": 0}
    assert parse_nvpmodel("NVPM WARN: fan mode is not set! NV Power Mode: 15W 2") == {"mode": "15W", "id": 2}
    assert parse_nvpmodel("command not found") is None
    locked = JETSON_CLOCKS_SHOW.replace("MinFreq=729600", "MinFreq=1984000").replace("MinFreq=306000000", "MinFreq=918000000")
    assert parse_jetson_clocks(locked) == {"locked": True, "cpus": 2, "unlocked": [], "gpu_max_mhz": 918.0, "gpu_mhz": 306.0}
    assert parse_jetson_clocks("") is None


def _report(clock: str = "cpu", **device) -> DeviceReport:
    facts = {"name": "AMD EPYC 7B13", "cpu": "AMD EPYC 7B13", "cores": 2, "gpu": None, "jetson": None, "onnxruntime": "1.32.0"}
    session = {"provider": "CPUExecutionProvider", "precision": "fp32"}
    settings = {"provider": "CPUExecutionProvider", "threads_used": 1, "runs": 10, "precision": "fp32", "clock": clock}
    doc = {"runner": 1, "device": {**facts, **device}, "settings": settings,
           "models": [{"name": "B4-2", "template_ms": 1, "p50": 2, "p90": 3, "p99": 4, "mean": 2.5, "runs": 10, "session": session}]}
    return parse_output(json.dumps(doc), "this machine", "python3", 0)


def test_facts_matching_a_measured_table_give_no_warning():
    assert fact_warnings(_report(), load_table("epyc-ort-fp32-1t").meta) == []


def test_facts_differing_from_a_table_each_give_one_line():
    orin = load_table("orin-nx").meta  # onnxruntime CUDA fp16 on a Jetson Orin NX
    lines = fact_warnings(_report(), orin)
    assert lines == [
        "device AMD EPYC 7B13 is not the table's NVIDIA Jetson Orin NX: its figures price another device",
        "CPUExecutionProvider ran on the device, the table was measured with CUDAExecutionProvider",
        "precision fp32 ran on the device, fp16 in the table",
    ]
    torch_table = fact_warnings(_report(cores=16, onnxruntime="1.16.3"), load_table("epyc-ort-fp32-1t").meta)
    assert torch_table == ["16 CPU cores on the device, 2 on the machine the table was measured on",
                           "onnxruntime 1.16.3 on the device, 1.32.0 in the table: kernels and graph fusions change between versions"]
    assert "verify times onnxruntime" in fact_warnings(_report(), load_table("2080ti").meta)[1]
    busy = fact_warnings(_report("wall", loadavg_1m=7.5), load_table("epyc-ort-fp32-1t").meta)
    assert busy == ["the table counts the calling thread's CPU time, the device run elapsed (wall) time: on a busy device "
                    "wall time is the higher",
                    "load average 7.5 on 2 cores when the timing started: other work on the device inflates wall-clock "
                    "figures (stop it, or time with clock cpu at 1 thread)"]


def test_runner_failures_are_one_line_each():
    def fails(doc) -> str:
        with pytest.raises(DeviceError) as err:
            parse_output(doc if isinstance(doc, str) else json.dumps(doc), "me@jetson", "python3", 1)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "pip install numpy" in fails({"runner": 1, "error": "numpy: No module named 'numpy'", "kind": "module", "module": "numpy"})
    assert "onnxruntime-gpu for CUDA" in fails({"runner": 1, "kind": "provider",
                                               "error": "execution provider TensorrtExecutionProvider is not available"})
    assert "is not runner format 1" in fails({"runner": 2, "models": []})
    assert "incomplete report" in fails({"runner": 1, "device": {}, "settings": {}, "models": [{"name": "B4-2", "p50": -1}]})
    assert "not its JSON report (Traceback" in fails("Traceback (most recent call last):\n  ...")


def test_job_settings_are_checked_and_taken_from_a_table(graphs):
    with pytest.raises(InputError, match=r"verify runs must be a whole number >= 1, got 0"):
        Job(graphs, runs=0)
    with pytest.raises(InputError, match=r"verify crop must be one of random, fixed"):
        Job(graphs, crop="moving")
    with pytest.raises(InputError, match=r"graph .*missing.onnx does not exist"):
        run_local(Job((ModelGraphs("B1-1", Path("missing.onnx"), graphs[0].frame),)))
    job = Job.from_meta(list(graphs), load_table("epyc-ort-fp32-1t").meta, runs=5)
    assert (job.provider, job.threads, job.precision, job.clock, job.runs) == ("CPUExecutionProvider", 1, "fp32", "cpu", 5)
    with pytest.raises(InputError, match=r"clock cpu counts the calling thread's CPU time: only with 1 thread"):
        Job(graphs, clock="cpu", threads=2)
    orin = Job.from_meta(list(graphs), load_table("orin-nx").meta)
    assert (orin.provider, orin.threads, orin.precision) == ("CUDAExecutionProvider", None, "fp16")
    assert Job.from_meta(list(graphs), load_table("2080ti").meta).provider == "CUDAExecutionProvider"  # PyTorch on CUDA
