import numpy as np
import pytest

from prunesearch.data.got10k import read_got10k
from prunesearch.data.synthetic import SynthParams, builtin_sequences, generate
from prunesearch.errors import PrunesearchError

TINY = SynthParams(width=96, height=72, min_frames=12, max_frames=14, min_size=14, max_size=20,
                   p_occluder=1.0, p_distractor=1.0, p_motion_blur=1.0, p_illumination=1.0)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), 3, seed=5, split="val", params=TINY)


def test_layout_is_got10k(split):
    names = (split / "list.txt").read_text().split()
    assert names == ["Synthetic_Val_000001", "Synthetic_Val_000002", "Synthetic_Val_000003"]
    for name in names:
        folder = split / name
        gt = (folder / "groundtruth.txt").read_text().splitlines()
        n = len(gt)
        assert 12 <= n <= 14
        assert all(len(line.split(",")) == 4 and len(line.split(",")[0].split(".")[1]) == 4 for line in gt)
        assert sorted(p.name for p in folder.glob("*.jpg")) == [f"{i:08d}.jpg" for i in range(1, n + 1)]
        for label in ("absence", "cover", "cut_by_image"):
            values = [int(v) for v in (folder / f"{label}.label").read_text().split()]
            assert len(values) == n
        assert "[METAINFO]" in (folder / "meta_info.ini").read_text()


def test_labels_are_consistent(split):
    for seq in read_got10k(split):
        cover, cut = seq.attributes["cover"], seq.attributes["cut_by_image"]
        assert cover.min() >= 0 and cover.max() <= 8
        assert cover[0] == 8 and seq.visible[0]
        np.testing.assert_array_equal(seq.visible, cover > 0)
        assert set(np.unique(cut)) <= {0, 1}
        x, y, w, h = seq.boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= 96 + 1e-3).all() and (y + h <= 72 + 1e-3).all()
        assert seq.image(0).shape == (72, 96, 3)


def test_deterministic_and_prefix_stable(tmp_path):
    a = read_got10k(generate(tmp_path / "a", 2, seed=5, split="val", params=TINY))
    b = read_got10k(generate(tmp_path / "b", 1, seed=5, split="val", params=TINY))
    np.testing.assert_array_equal(a[0].boxes, b[0].boxes)
    np.testing.assert_array_equal(a[0].image(3), b[0].image(3))
    train = read_got10k(generate(tmp_path / "c", 1, seed=5, split="train", params=TINY))
    assert not np.array_equal(train[0].boxes[:3], a[0].boxes[:3])


def test_the_files_are_the_same_whatever_the_number_of_threads(tmp_path):
    one, three = (generate(tmp_path / str(n), 4, seed=5, split="train", params=TINY, threads=n) for n in (1, 3))
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) > 4 * TINY.min_frames and files == sorted(p.relative_to(three) for p in three.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (three / f).read_bytes() for f in files)


def test_target_moves_away_from_first_box(split):
    seq = read_got10k(split)[0]
    centres = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
    assert np.linalg.norm(centres - centres[0], axis=1).max() > 10


def test_refuses_nonempty_output(split):
    with pytest.raises(PrunesearchError, match="not empty"):
        generate(split.parent, 1, split="val", params=TINY)


def test_builtin_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path))
    first = builtin_sequences("val", count=1, params=TINY)
    stamp = first[0].frames[0].stat().st_mtime_ns
    again = builtin_sequences("val", count=1, params=TINY)
    assert again[0].frames[0] == first[0].frames[0]
    assert again[0].frames[0].stat().st_mtime_ns == stamp
    assert not list((tmp_path / "synthetic").glob(".tmp-*"))
