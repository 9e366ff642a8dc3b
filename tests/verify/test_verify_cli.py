"""``prunesearch verify`` on a real tiny search: its front timed here and over a real OpenSSH server,
an optimistic table caught and corrected by ``--derive``, and device failures that record nothing.

One tiny search (small architecture, six trained candidates) serves every test. It is priced on
``epyc-opt``: the measured CPU table of the small architecture with every entry x0.7, so the device
(this machine) is slower than every price. Timing uses that table's settings: onnxruntime CPU,
one thread, the calling thread's CPU time, which a busy machine inflates least.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from prunesearch.cli.main import main
from prunesearch.latency import load_table
from prunesearch.search.mlflow_runs import schema as s
from test_verify_device import JETSON_CLOCKS_SHOW, NVPMODEL_Q
from tests.support.ssh_server import SshServer
from tests.support.verify_search import MEASURED, OPTIMISTIC, RUN, verify_search_folder

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")]
needs_sshd = pytest.mark.skipif(not SshServer.available(), reason="OpenSSH server not installed (apt-get install openssh-server)")
FAST = ["--runs", "30", "--warmup", "3"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The folder of a finished tiny search priced on the optimistic table, budget 2 ms."""
    root = tmp_path_factory.mktemp("verify")
    verify_search_folder(root)
    with pytest.MonkeyPatch.context() as env:
        env.chdir(root)
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        env.setenv("OMP_NUM_THREADS", "1")
        assert main(RUN) == 0
    return root


@pytest.fixture
def here(searched, monkeypatch, capsys):
    monkeypatch.chdir(searched)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{searched / 'mlflow.db'}")
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(searched / "cache"))  # exported graphs, shared by this module's tests
    capsys.readouterr()
    return searched


@pytest.fixture(scope="module")
def sshd():
    server = SshServer.start()
    yield server
    server.stop()


def ssh_flags(server: SshServer, key: Path | None = None) -> list[str]:
    client = server.client(key)
    flags = ["--host", server.host, "--identity", str(client["identity"]), "--remote-tmp", client["remote_tmp"],
             "--python", sys.executable]
    for option in client["options"]:
        flags += ["--ssh-option", option]
    return flags


def verify_json(capsys, *args: str) -> tuple[int, dict, str]:
    """Exit code, the JSON document (empty on failure), stderr."""
    code = main(["verify", "--experiment", "tiny.yaml", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def candidate_runs(folder: Path) -> dict[str, tuple[dict, dict]]:
    """Each trained candidate's (tags, metrics)."""
    mlflow_client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = mlflow_client.get_experiment_by_name("tiny").experiment_id
    runs = mlflow_client.search_runs([exp], filter_string=f"tags.{s.KIND} = '{s.CANDIDATE_RUN}'")
    return {r.data.tags[s.CANDIDATE]: (dict(r.data.tags), dict(r.data.metrics)) for r in runs}


def test_pareto_reprices_on_a_table_the_search_never_used(here, capsys):
    table = load_table(MEASURED)
    assert main(["pareto", "--experiment", "tiny", "--target", MEASURED, "--all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repriced"] == (f"re-priced with {MEASURED} (table sha {table.sha256[:12]}) from each candidate's recorded "
                               f"depth and interaction layers; the search priced on {OPTIMISTIC}")
    rows = out["candidates"][MEASURED]
    assert len(rows) == 6
    for row in rows:
        assert row["frame_ms"] == pytest.approx(table.estimate(row["depth"], row["ai_layers"]).per_frame_ms)
    assert main(["pareto", "--experiment", "tiny", "--target", OPTIMISTIC, "--all", "--json"]) == 0
    searched_rows = {r["candidate"]: r for r in json.loads(capsys.readouterr().out)["candidates"][OPTIMISTIC]}
    for row in rows:  # accuracy from the runs, the price from the table: x0.7 apart
        assert row["ao"] == searched_rows[row["candidate"]]["ao"]
        assert searched_rows[row["candidate"]]["frame_ms"] == pytest.approx(0.7 * row["frame_ms"], rel=1e-4)
    assert main(["pareto", "--experiment", "tiny", "--target", "orin-nx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latency table 'orin-nx' prices architecture vit-b; 'tiny' searched small" in err


@pytest.mark.servers
@needs_sshd
def test_front_verified_here_and_over_ssh_alike(here, sshd, capsys):
    before = set(os.listdir(sshd.tmp))
    code, local, _ = verify_json(capsys, "--target", MEASURED, *FAST)
    assert code == 0
    code, remote, _ = verify_json(capsys, "--target", MEASURED, *FAST, *ssh_flags(sshd))
    assert code == 0 and set(os.listdir(sshd.tmp)) == before == set()
    assert local["where"] == "this machine" and remote["where"] == sshd.host
    names = [m["model"] for m in local["models"]]
    assert names == [m["model"] for m in remote["models"]] and names[-1] == "teacher" and len(names) >= 2
    assert all(m["status"] == "front" for m in local["models"][:-1])
    for a, b in zip(local["models"], remote["models"]):
        assert a["priced_ms"] == b["priced_ms"] and 0 < a["p50_ms"] <= a["p90_ms"] <= a["p99_ms"]
        assert 1 / 3 < a["p50_ms"] / b["p50_ms"] < 3, (a, b)  # the same machine: within noise
    runs = candidate_runs(here)
    for m in remote["models"][:-1]:
        tags, metrics = runs[m["model"]]
        assert metrics[s.VERIFY_P50_MS] == pytest.approx(m["p50_ms"]) and metrics[s.VERIFY_P99_MS] == pytest.approx(m["p99_ms"])
        assert tags[s.VERIFY_WITHIN_BUDGET] == str(m["within_budget_p99"]).lower() and tags[s.VERIFY_WHERE] == sshd.host
        assert tags[f"{s.VERIFY_DEVICE}.onnxruntime"] == remote["device"]["onnxruntime"]
    parent = remote["parent_run"]
    mlflow_client = MlflowClient(tracking_uri=f"sqlite:///{here / 'mlflow.db'}")
    artifacts = {a.path for a in mlflow_client.list_artifacts(parent)} | {a.path for a in mlflow_client.list_artifacts(parent, "verify")}
    table_file, plot_file, measured_file = s.verify_files(MEASURED)
    assert {table_file, plot_file, measured_file} <= artifacts
    metrics = mlflow_client.get_run(parent).data.metrics
    assert metrics[s.per(s.VERIFY_MEDIAN_DRIFT, MEASURED)] == pytest.approx(remote["median_drift"])


def test_optimistic_table_is_caught_and_derive_corrects_the_front(here, capsys):
    # One member per shape (a logged front member where there is one): enough to fit, fewer graphs to export.
    runs = sorted(candidate_runs(here).items(), key=lambda kv: not kv[1][0].get(s.MODEL_URI))
    one_per_shape = {key.split("/")[0]: key for key, _ in reversed(runs)}
    assert len(one_per_shape) >= 3
    code, out, _ = verify_json(capsys, "--target", OPTIMISTIC, "--members", ",".join(one_per_shape.values()), *FAST,
                               "--derive", "epyc-fixed")
    assert code == 0
    members = [m for m in out["models"] if m["status"] != "teacher"]
    assert sorted(m["model"] for m in members) == sorted(one_per_shape.values())
    for m in out["models"]:  # every model measured well over its x0.7 price
        assert m["drift"] > 0.15, m
    assert out["kendall_tau"] > 0
    derived = out["derived"]
    assert derived["tie"].startswith(f"tie: {OPTIMISTIC}'s own part costs") and Path(derived["path"]).is_file()
    assert {v["name"] for v in derived["variants"]} >= {"teacher"} and len(derived["variants"]) >= 4
    fixed = load_table("epyc-fixed")
    assert fixed.meta["method"] == "derived" and (here / "latency_models" / "measured" / "epyc-fixed.yaml").is_file()
    # The corrected prices sit near the measured ones; the candidates they no longer fit are dropped.
    before = {m["model"]: m for m in members}
    budget = out["budget_ms"]
    kept = {r["candidate"]: r for r in derived["front"]}
    for key, row in kept.items():
        assert row["frame_ms"] <= budget and row["frame_ms"] > before[key]["priced_ms"]
    no_longer = {k for k, m in before.items() if fixed.estimate(*map(int, k.split("/")[0][1:].split("-"))).per_frame_ms > budget}
    assert no_longer and not no_longer & set(kept)
    assert all(m["priced_ms"] <= budget for m in members)  # on the optimistic table every one of them fitted
    # --strict: a front member over the budget at p99 is exit 1 (the table it was priced on fits it in 1.4 ms). The
    # "device" has Jetson tools on its PATH reporting clocks not locked: one warning line before the figures.
    tools = here / "jetson-bin"
    tools.mkdir(exist_ok=True)
    for name, text in (("nvpmodel", NVPMODEL_Q), ("jetson_clocks", JETSON_CLOCKS_SHOW)):
        (tools / name).write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}EOF\n")
        (tools / name).chmod(0o755)
    python = f"env PATH={tools}:$PATH {sys.executable}"
    assert main(["verify", "--experiment", "tiny", "--target", OPTIMISTIC, *FAST, "--budget", "1.4ms", "--strict",
                 "--python", python]) == 1
    text, err = capsys.readouterr()
    assert "--strict: front member(s) over 1.40 ms at p99" in err
    assert f"priced with {OPTIMISTIC}" in text and "overall: median drift" in text
    warning = text.index("warning: clocks are not locked on the device")
    assert warning < text.index("drift") and "sudo jetson_clocks" in text


@pytest.mark.servers
@needs_sshd
def test_unreachable_or_refused_device_is_one_line_and_records_nothing(here, sshd, capsys, tmp_path):
    from tests.support.servers import free_port

    before = candidate_runs(here)
    code, _, err = verify_json(capsys, "--target", MEASURED, *FAST, *ssh_flags(sshd), "--host", f"127.0.0.1:{free_port()}")
    assert code == 2 and err.count("\n") == 1 and "over ssh" in err and "Connection refused" in err
    code, _, err = verify_json(capsys, "--target", MEASURED, *FAST, *ssh_flags(sshd, sshd.other_key))
    assert code == 2 and err.count("\n") == 1 and "refused the login" in err and "ssh-copy-id" in err
    assert candidate_runs(here) == before and os.listdir(sshd.tmp) == []


def test_member_whose_checkpoint_is_elsewhere_is_one_line(here, capsys):
    runs = candidate_runs(here)
    key = next(k for k, (tags, _) in runs.items() if not tags.get(s.MODEL_URI))
    checkpoint = Path(runs[key][0][s.CHECKPOINT])
    moved = checkpoint.with_suffix(".away")
    checkpoint.rename(moved)
    try:
        assert main(["verify", "--experiment", "tiny", "--target", MEASURED, "--members", key, *FAST]) == 2
    finally:
        moved.rename(checkpoint)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key} has no logged model and its checkpoint {checkpoint} is not on this machine" in err


def test_derive_that_cannot_fit_is_refused_before_timing(here, capsys):
    assert main(["verify", "--experiment", "tiny", "--target", OPTIMISTIC, "--derive", OPTIMISTIC, *FAST]) == 2
    assert "--derive epyc-opt: that is the table being verified" in capsys.readouterr().err
    assert main(["verify", "--experiment", "tiny", "--target", OPTIMISTIC, "--members", "front", "--derive", "x", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--derive needs at least 3 student shapes" in err and "pass --members all" in err
    assert not (here / "latency_models" / "x.yaml").exists()
