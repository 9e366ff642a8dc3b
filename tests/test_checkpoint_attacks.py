"""Hostile checkpoint files, each given to the real CLI in a process under a memory cap and a time
limit: legacy tar members that would change or block on a file elsewhere, tiny files whose config
or tensors ask for gigabytes, a record that declares more than the file holds, a kilobyte of shared
references and a pickle nested 200,000 deep. Each must be one line and a non-zero exit (or, for
the shared references, a small copy), leave a victim file elsewhere as it was, leave an existing
output untouched and write no temporary file anywhere."""

from __future__ import annotations

import os
import pickle
import resource
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from prunesearch.checkpoint_file import MAX_NESTING
from prunesearch.checkpoints import FORMAT, extract, read_file
from prunesearch.errors import CheckpointError
from prunesearch.models import build_teacher, get_preset
from prunesearch.models.vit_tracker import TrackerConfig

MEMORY_CAP = 2 << 30  # a Python with torch imported takes ~0.9 GB of address space
TIME_LIMIT_S = 90  # generous for a loaded machine; a refusal takes a few seconds


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(folder: Path, *args: str) -> tuple[int, str, float]:
    """``prunesearch ARGS`` in ``folder`` under the memory cap, with its own empty TMPDIR."""
    tmp = folder / "tmpdir"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TMPDIR=str(tmp), OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "prunesearch", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=TIME_LIMIT_S, preexec_fn=_capped)
    assert not any(tmp.iterdir()), f"left in TMPDIR: {sorted(p.name for p in tmp.iterdir())}"
    return done.returncode, done.stderr.strip(), time.monotonic() - start


def _one_line(code: int, err: str, expect: str) -> None:
    assert code == 2 and err.startswith("prunesearch: error:") and "\n" not in err, (code, err[-2000:])
    assert expect in err, err


def _fingerprint(path: Path) -> tuple:
    info = path.lstat()
    return info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, info.st_size, info.st_nlink


# --- legacy tar members ---------------------------------------------------------------------


def legacy_tar(path: Path, kind: str, victim: Path) -> Path:
    """A file in PyTorch's legacy tar layout whose ``storages`` member (the one torch extracts first,
    with no filter) is a hard link or symlink to ``victim``, a FIFO or a character device, asking for
    mode 7777, owner 1234:1234 and mtime 0."""
    member = tarfile.TarInfo("storages")
    member.type = {"hardlink": tarfile.LNKTYPE, "symlink": tarfile.SYMTYPE, "fifo": tarfile.FIFOTYPE,
                   "device": tarfile.CHRTYPE}[kind]
    if kind in ("hardlink", "symlink"):
        member.linkname = str(victim)
    if kind == "device":
        member.devmajor, member.devminor = 1, 3
    member.mode, member.uid, member.gid, member.mtime = 0o7777, 1234, 1234, 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(member)
    return path


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim" / "secret.txt"
    path.parent.mkdir()
    path.write_text("keep me\n")
    path.chmod(0o600)
    return path


def test_the_hard_link_member_is_live(tmp_path, victim):
    """Plain ``torch.load`` of the crafted file does change the victim (why the CLI must never call it)."""
    evil = legacy_tar(tmp_path / "evil.pth.tar", "hardlink", victim)
    before = _fingerprint(victim)
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(evil)!r}, weights_only=False)"],
                   capture_output=True, timeout=TIME_LIMIT_S)
    assert stat.S_IMODE(victim.stat().st_mode) != stat.S_IMODE(before[0])


@pytest.mark.parametrize("kind", ["hardlink", "symlink", "fifo", "device"])
def test_legacy_tar_members_touch_nothing(tmp_path, victim, kind):
    evil = legacy_tar(tmp_path / "evil.pth.tar", kind, victim)
    out = tmp_path / "out" / "net.pth"
    out.parent.mkdir()
    out.write_bytes(b"an earlier extract")
    before, out_before = _fingerprint(victim), _fingerprint(out)
    code, err, seconds = cli(tmp_path, "checkpoint", "extract", str(evil), str(out))
    _one_line(code, err, "tar archive")
    assert _fingerprint(victim) == before and victim.read_text() == "keep me\n"
    assert _fingerprint(out) == out_before and out.read_bytes() == b"an earlier extract"
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.pth"]
    # Loading it (inspect, eval, export, run --teacher) is refused the same way, without the subprocess.
    with pytest.raises(CheckpointError, match="tar archive"):
        read_file(evil)
    assert _fingerprint(victim) == before


def test_pre_zip_format_is_refused(tmp_path):
    torch.save({"net": {"a": torch.zeros(2)}}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    for call in (lambda: read_file(tmp_path / "old.pth"), lambda: extract(tmp_path / "old.pth", tmp_path / "o.pth")):
        with pytest.raises(CheckpointError, match="legacy format from before 1.6"):
            call()
    assert not (tmp_path / "o.pth").exists()


# --- size bombs ----------------------------------------------------------------------------


def native_file(path: Path, kind: str = "joint", spec: dict | None = None, **config: object) -> Path:
    """A prunesearch file of the small preset with ``config`` changed and no weights (~1.5 KB)."""
    cfg = get_preset("small").to_dict() | config
    torch.save({"format": FORMAT, "kind": kind, "config": cfg, "spec": spec, "state_dict": {}, "extra": {}}, path)
    return path


def stride_zero_net(cfg: TrackerConfig) -> dict[str, torch.Tensor]:
    """OSTrack's keys and shapes for ``cfg``, every tensor a stride-0 view of one float (a few KB in all)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_teacher(cfg).state_dict().items() if not k.endswith("num_batches_tracked")}
    one = torch.zeros(1)
    return {(k if k.startswith("box_head.") else f"backbone.{k}"): one.expand(*s) for k, s in shapes.items()}


WIDE = TrackerConfig(embed_dim=8192, num_heads=128, depth=1)


@pytest.mark.parametrize(
    "name,make,command,expect",
    [
        ("wide", lambda p: native_file(p, embed_dim=8192, num_heads=8), "inspect", "config embed_dim is 8192; allowed: a whole number from 1 to 4096"),
        ("deep", lambda p: native_file(p, depth=1_000_000), "run", "config depth is 1000000"),
        ("deep_student", lambda p: native_file(p, "async", {"depth": 1_000_000, "ai_layers": 1}), "inspect",
         "student depth is 1000000"),
        ("heads0", lambda p: native_file(p, num_heads=0), "inspect", "does not describe a tracker"),
        ("text", lambda p: native_file(p, embed_dim="x"), "inspect", "does not describe a tracker"),
        ("params", lambda p: native_file(p, embed_dim=4096, num_heads=64, depth=64), "inspect", "over the limit MAX_PARAMS"),
        ("stride0", lambda p: torch.save({"net": stride_zero_net(WIDE)}, p), "inspect", "claims more elements than its storage"),
    ],
)
def test_tiny_files_asking_for_gigabytes_are_refused_before_allocation(tmp_path, name, make, command, expect):
    path = tmp_path / f"{name}.pth"
    make(path)
    assert path.stat().st_size < 16384
    args = {"inspect": ["inspect", "--checkpoint", str(path), "--no-fvcore"],
            "run": ["run", "--teacher", str(path), "--target", "orin-nx", "--budget", "9ms"]}[command]
    code, err, seconds = cli(tmp_path, *args)
    _one_line(code, err, expect)
    assert not (tmp_path / "mlflow.db").exists()


def test_vit_l_scale_passes_the_limits(tmp_path):
    """The limits are generous: a ViT-L tracker at OSTrack-384's crops loads (built on the meta device)."""
    from prunesearch.models.vit_tracker import size_problem

    assert size_problem(TrackerConfig(embed_dim=1024, num_heads=16, depth=24, template_size=192, search_size=384)) is None


def _rezip(source: Path, target: Path, replace: dict[str, bytes] | None = None) -> Path:
    """``source``'s records written again to ``target``, with some records' contents replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for record in old.infolist():
            new.writestr(record.filename, (replace or {}).get(record.filename, old.read(record.filename)))
    return target


def _declare(path: Path, record: str, size: int) -> Path:
    """Make ``record``'s entries (local and central) declare ``size`` bytes, deflated: a bomb's headers."""
    data = bytearray(path.read_bytes())
    name = record.encode()
    for signature, method_at, size_at in ((b"PK\x03\x04", 8, 22), (b"PK\x01\x02", 10, 24)):
        at = data.find(signature)
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[at + method_at:at + method_at + 2] = (8).to_bytes(2, "little")
                data[at + size_at:at + size_at + 4] = size.to_bytes(4, "little")
            at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))
    return path


def test_a_record_declaring_more_than_the_file_is_refused_unread(tmp_path):
    torch.save({"net": {"backbone.blocks.0.attn.qkv.weight": torch.zeros(4)}}, tmp_path / "n.pth")
    record = next(n for n in zipfile.ZipFile(tmp_path / "n.pth").namelist() if n.endswith("/data/0"))
    bomb = _declare(_rezip(tmp_path / "n.pth", tmp_path / "bomb.pth"), record, 0xF000_0000)
    out = tmp_path / "net.pth"
    code, err, _ = cli(tmp_path, "checkpoint", "extract", str(bomb), str(out))
    _one_line(code, err, "its records declare 40265")
    assert not out.exists()
    code, err, _ = cli(tmp_path, "inspect", "--checkpoint", str(bomb), "--no-fvcore")
    _one_line(code, err, "PyTorch stores records uncompressed")


def test_stride_zero_training_file_is_refused_by_extract(tmp_path):
    evil = tmp_path / "evil.pth.tar"
    torch.save({"net": stride_zero_net(WIDE), "epoch": 1}, evil)
    code, err, _ = cli(tmp_path, "checkpoint", "extract", str(evil), str(tmp_path / "net.pth"))
    _one_line(code, err, "a checkpoint's tensors never exceed their storage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth.tar", "tmpdir"]


def _net_pickle(net_opcodes: bytes) -> bytes:
    """A pickle of ``{"net": <what net_opcodes push>}``."""
    return b"\x80\x02}X\x03\x00\x00\x00net" + net_opcodes + b"s."


def test_a_pickle_nested_200000_deep_is_one_line(tmp_path):
    depth = 200_000
    torch.save({"net": None}, tmp_path / "shell.pth")
    record = next(n for n in zipfile.ZipFile(tmp_path / "shell.pth").namelist() if n.endswith("/data.pkl"))
    deep = _rezip(tmp_path / "shell.pth", tmp_path / "deep.pth", {record: _net_pickle(b"]" * depth + b"a" * (depth - 1))})
    assert deep.stat().st_size < 450_000
    code, err, _ = cli(tmp_path, "checkpoint", "extract", str(deep), str(tmp_path / "net.pth"))
    _one_line(code, err, f"nests objects more than MAX_NESTING = {MAX_NESTING} deep")
    code, err, _ = cli(tmp_path, "inspect", "--checkpoint", str(deep), "--no-fvcore")
    _one_line(code, err, "MAX_NESTING")


def test_a_kilobyte_of_shared_references_stays_a_kilobyte(tmp_path):
    """Nine levels of ten references to the level below: 10^9 tensors if expanded, one when shared."""
    level: object = [torch.ones(2)] * 10
    for _ in range(8):
        level = [level] * 10
    source = tmp_path / "laughs.pth.tar"
    torch.save({"net": {"backbone.blocks.0.attn.qkv.weight": torch.ones(3)}, "settings": {"laughs": level}}, source)
    assert source.stat().st_size < 4096
    start = time.monotonic()
    out, left_out = extract(source, tmp_path / "net.pth")
    assert time.monotonic() - start < 10 and out.stat().st_size < 8192 and left_out == []
    kept = read_file(out)
    assert torch.equal(kept["net"]["backbone.blocks.0.attn.qkv.weight"], torch.ones(3))
    assert torch.equal(kept["settings"]["laughs"][0][0][0][0][0][0][0][0][0], torch.ones(2))


def test_a_bad_input_leaves_an_existing_output_as_it_was(tmp_path):
    out = tmp_path / "net.pth"
    torch.save({"net": {"backbone.blocks.0.attn.qkv.weight": torch.ones(3)}}, tmp_path / "good.pth.tar")
    extract(tmp_path / "good.pth.tar", out)
    before = out.read_bytes()
    (tmp_path / "junk.pth").write_bytes(b"junk" * 100)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pth")  # reads, but is no tracker's
    pickled = tmp_path / "pickled.pth"
    pickled.write_bytes(pickle.dumps({"net": 1}))
    for bad, expect in (("junk.pth", "not the zip archive"), ("foreign.pth", "not a prunesearch, OSTrack or LiteTrack"),
                        ("pickled.pth", "not the zip archive")):
        with pytest.raises(CheckpointError, match=expect):
            extract(tmp_path / bad, out)
        assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
