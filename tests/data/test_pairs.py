import numpy as np
import pytest
import torch

from prunesearch.data.processing import IMAGENET_MEAN, IMAGENET_STD
from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError
from prunesearch.training.pairs import AugmentConfig, FrameCache, PairSampler


@pytest.fixture
def square_sequence(tmp_path):
    """A white square (12 x 12) moving right over black frames; frame 3 marked absent."""
    import cv2

    frames, boxes = [], []
    for t in range(6):
        img = np.zeros((60, 80, 3), dtype=np.uint8)
        x, y = 10 + 6 * t, 20
        img[y:y + 12, x:x + 12] = 255
        path = tmp_path / f"{t + 1:08d}.jpg"
        cv2.imwrite(str(path), img)
        frames.append(path)
        boxes.append([x, y, 12, 12])
    visible = np.ones(6, dtype=bool)
    visible[3] = False
    return Sequence("square", frames, np.array(boxes, float), visible)


NO_AUG = AugmentConfig(center_jitter=0.0, scale_jitter=0.0, brightness=0.0, grayscale_prob=0.0, flip_prob=0.0)


def test_unjittered_pair_centres_the_target(square_sequence):
    sampler = PairSampler([square_sequence], 32, 64, max_gap=2, augment=NO_AUG, seed=0)
    z, x, box = sampler.sample()
    assert z.shape == (32, 32, 3) and x.shape == (64, 64, 3)
    np.testing.assert_allclose(box, [0.5, 0.5, 0.25, 0.25], atol=1e-6)
    # the search crop's centre is the white square, its corners are background
    assert x[32, 32].min() > 200 and x[2, 2].max() < 30


def test_jittered_box_points_at_the_target(square_sequence):
    sampler = PairSampler([square_sequence], 32, 64, augment=AugmentConfig(flip_prob=0.0, brightness=0.0), seed=1)
    for _ in range(20):
        _, x, (cx, cy, w, h) = sampler.sample()
        assert 0 <= cx <= 1 and 0 <= cy <= 1
        if 4 <= cx * 64 < 60 and 4 <= cy * 64 < 60:
            assert x[int(cy * 64), int(cx * 64)].min() > 150


def test_pairs_stay_within_gap_and_skip_absent_frames(square_sequence):
    sampler = PairSampler([square_sequence], 32, 64, max_gap=1, seed=3)
    for i in range(50):
        _, t, s = sampler._pick(sampler.rng(i))
        assert abs(t - s) <= 1 and square_sequence.visible[t] and square_sequence.visible[s]


def test_causal_pairs_search_after_the_template_within_the_gap(square_sequence):
    # Visible frames 0, 1, 2, 4, 5. With a gap of 1, frame 2 has no visible successor within reach
    # (3 is absent) and 5 none at all, so templates are 0, 1, 4.
    sampler = PairSampler([square_sequence], 32, 64, max_gap=1, seed=3, mode="causal")
    seen = {sampler._pick(sampler.rng(i))[1:] for i in range(200)}
    assert seen == {(0, 1), (1, 2), (4, 5)}
    wide = PairSampler([square_sequence], 32, 64, seed=3, mode="causal")
    assert wide.max_gap == 200
    pairs = {wide._pick(wide.rng(i))[1:] for i in range(400)}
    assert all(s > t and square_sequence.visible[s] for t, s in pairs) and (0, 5) in pairs


def test_causal_needs_two_visible_frames(square_sequence):
    square_sequence.visible[:] = False
    square_sequence.visible[2] = True
    with pytest.raises(PrunesearchError, match="two visible frames"):
        PairSampler([square_sequence], 32, 64, mode="causal")
    with pytest.raises(PrunesearchError, match="sampling 'forward'"):
        PairSampler([square_sequence], 32, 64, mode="forward")


def test_pairs_do_not_depend_on_the_number_of_loader_workers(square_sequence):
    from prunesearch.training.pairs import pair_batches

    def drawn(workers):
        sampler = PairSampler([square_sequence], 32, 64, seed=11, mode="causal")
        return list(pair_batches(sampler, 3, 4, workers=workers))

    alone, two = drawn(0), drawn(2)
    assert len(alone) == len(two) == 3
    for a, b in zip(alone, two):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(alone[0].search, alone[1].search)
    # the same pairs as drawing one by one in this process
    direct = PairSampler([square_sequence], 32, 64, seed=11, mode="causal").batch(4)
    assert torch.allclose(direct.search, alone[0].search) and torch.equal(direct.boxes, alone[0].boxes)


def test_flip_mirrors_box(square_sequence):
    flip = AugmentConfig(center_jitter=0.0, scale_jitter=0.0, brightness=0.0, grayscale_prob=0.0, flip_prob=1.0)
    plain = PairSampler([square_sequence], 32, 64, augment=NO_AUG, seed=4).sample()
    flipped = PairSampler([square_sequence], 32, 64, augment=flip, seed=4).sample()
    np.testing.assert_allclose(flipped[1], plain[1][:, ::-1])
    assert flipped[2][0] == pytest.approx(1 - plain[2][0])


def test_batch_is_normalised_and_reproducible(square_sequence):
    a = PairSampler([square_sequence], 32, 64, seed=7).batch(3)
    b = PairSampler([square_sequence], 32, 64, seed=7).batch(3)
    assert a.template.shape == (3, 3, 32, 32) and a.search.shape == (3, 3, 64, 64) and a.boxes.shape == (3, 4)
    assert torch.equal(a.search, b.search) and torch.equal(a.boxes, b.boxes)
    black = float((0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0])
    assert a.search[:, 0].min() == pytest.approx(black, abs=0.05)


def test_frame_cache_evicts_least_recent(square_sequence):
    cache = FrameCache(capacity=2)
    first = cache.get([square_sequence], 0, 0)
    cache.get([square_sequence], 0, 1)
    assert cache.get([square_sequence], 0, 0) is first
    cache.get([square_sequence], 0, 2)
    assert (0, 1) not in cache._frames and (0, 0) in cache._frames


def test_no_visible_target_is_a_clear_error(square_sequence):
    square_sequence.visible[:] = False
    with pytest.raises(PrunesearchError, match="no sequence"):
        PairSampler([square_sequence], 32, 64)
