"""Checkpoint loading: state dicts with OSTrack's and LiteTrack's real key names and shapes.

The references below re-implement each tracker's forward pass directly from the state dict,
following the original code (OSTrack ``vit.py``/``base_backbone.py``/``head.py``; LiteTrack
``vit_cae_async.py``/``litetrack.py``), so a loaded model must compute what they compute.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from prunesearch import PrunesearchError
from prunesearch.checkpoints import infer_config, load_checkpoint, load_tracker, map_external, save_checkpoint
from prunesearch.models import AsyncTracker, JointTracker, get_preset
from prunesearch.pruning import student_from_teacher

DIM, HEADS, PATCH, Z_SIZE, X_SIZE, CHANNEL = 128, 2, 16, 32, 64, 32


def _head_state(dim: int, channel: int) -> dict:
    """``box_head.*`` of OSTrack's CenterPredictor: four conv+BN+ReLU per branch, then a 1x1 conv."""
    state = {}
    chans = [dim, channel, channel // 2, channel // 4, channel // 8]
    for branch, out in (("ctr", 1), ("offset", 2), ("size", 2)):
        for i in range(4):
            p = f"box_head.conv{i + 1}_{branch}"
            state[f"{p}.0.weight"] = torch.randn(chans[i + 1], chans[i], 3, 3) / math.sqrt(9 * chans[i])
            state[f"{p}.0.bias"] = torch.randn(chans[i + 1]) * 0.1
            state[f"{p}.1.weight"] = 1 + 0.1 * torch.randn(chans[i + 1])
            state[f"{p}.1.bias"] = 0.1 * torch.randn(chans[i + 1])
            state[f"{p}.1.running_mean"] = 0.1 * torch.randn(chans[i + 1])
            state[f"{p}.1.running_var"] = 1 + torch.rand(chans[i + 1])
            state[f"{p}.1.num_batches_tracked"] = torch.tensor(1000)
        state[f"box_head.conv5_{branch}.weight"] = torch.randn(out, chans[4], 1, 1) / math.sqrt(chans[4])
        state[f"box_head.conv5_{branch}.bias"] = torch.randn(out) * 0.1
    return state


def _backbone_common(dim: int, depth: int, z_size: int, x_size: int) -> dict:
    grid = lambda size: (size // PATCH) ** 2  # noqa: E731
    state = {
        "backbone.cls_token": torch.randn(1, 1, dim),
        "backbone.pos_embed": torch.randn(1, 197, dim),
        "backbone.pos_embed_z": 0.02 * torch.randn(1, grid(z_size), dim),
        "backbone.pos_embed_x": 0.02 * torch.randn(1, grid(x_size), dim),
        "backbone.patch_embed.proj.weight": torch.randn(dim, 3, PATCH, PATCH) / math.sqrt(3 * PATCH * PATCH),
        "backbone.patch_embed.proj.bias": 0.02 * torch.randn(dim),
    }
    for i in range(depth):
        b = f"backbone.blocks.{i}"
        for norm in ("norm1", "norm2"):
            state[f"{b}.{norm}.weight"] = 1 + 0.1 * torch.randn(dim)
            state[f"{b}.{norm}.bias"] = 0.1 * torch.randn(dim)
        state[f"{b}.attn.qkv.weight"] = torch.randn(3 * dim, dim) / math.sqrt(dim)
        state[f"{b}.attn.proj.weight"] = torch.randn(dim, dim) / math.sqrt(dim)
        state[f"{b}.attn.proj.bias"] = 0.02 * torch.randn(dim)
        state[f"{b}.mlp.fc1.weight"] = torch.randn(4 * dim, dim) / math.sqrt(dim)
        state[f"{b}.mlp.fc1.bias"] = 0.02 * torch.randn(4 * dim)
        state[f"{b}.mlp.fc2.weight"] = torch.randn(dim, 4 * dim) / math.sqrt(4 * dim)
        state[f"{b}.mlp.fc2.bias"] = 0.02 * torch.randn(dim)
    return state


def ostrack_state(dim=DIM, depth=3, z_size=Z_SIZE, x_size=X_SIZE, channel=CHANNEL) -> dict:
    """An OSTrack ``checkpoint["net"]``: timm ViT blocks with qkv bias and a final norm."""
    state = _backbone_common(dim, depth, z_size, x_size)
    for i in range(depth):
        state[f"backbone.blocks.{i}.attn.qkv.bias"] = 0.1 * torch.randn(3 * dim)
    state["backbone.norm.weight"] = 1 + 0.1 * torch.randn(dim)
    state["backbone.norm.bias"] = 0.1 * torch.randn(dim)
    return {**state, **_head_state(dim, channel)}


def litetrack_state(dim=DIM, depth=4, z_size=Z_SIZE, x_size=X_SIZE, channel=CHANNEL) -> dict:
    """A LiteTrack ``checkpoint["net"]``: CAE blocks (q/v bias, layer scales), no final norm."""
    state = _backbone_common(dim, depth, z_size, x_size)
    for i in range(depth):
        b = f"backbone.blocks.{i}"
        state[f"{b}.attn.q_bias"] = 0.1 * torch.randn(dim)
        state[f"{b}.attn.v_bias"] = 0.1 * torch.randn(dim)
        state[f"{b}.gamma_1"] = 0.1 + 0.05 * torch.randn(dim)
        state[f"{b}.gamma_2"] = 0.1 + 0.05 * torch.randn(dim)
    # USE_CLS_TOKEN configs: the box-token MLP (in 4, hidden 4, out dim), outside the backbone.
    state["target_token_embed.fc1.weight"] = torch.randn(4, 4)
    state["target_token_embed.fc1.bias"] = torch.randn(4)
    state["target_token_embed.fc2.weight"] = torch.randn(dim, 4)
    state["target_token_embed.fc2.bias"] = torch.randn(dim)
    return {**state, **_head_state(dim, channel)}


def _ln(s, prefix, x):
    return F.layer_norm(x, x.shape[-1:], s[f"{prefix}.weight"], s[f"{prefix}.bias"], eps=1e-6)


def _mlp(s, b, x):
    x = F.gelu(x @ s[f"{b}.mlp.fc1.weight"].T + s[f"{b}.mlp.fc1.bias"])
    return x @ s[f"{b}.mlp.fc2.weight"].T + s[f"{b}.mlp.fc2.bias"]


def _embed(s, img, pos):
    x = F.conv2d(img, s["backbone.patch_embed.proj.weight"], s["backbone.patch_embed.proj.bias"], stride=PATCH)
    return x.flatten(2).transpose(1, 2) + s[pos]


def _attend(q, k, v, heads):
    """Per head: softmax(q k^T * scale) v, with q [B,Nq,C] and k, v [B,Nk,C]."""
    b, nq, c = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
    att = (split(q) @ split(k).transpose(-2, -1)) * (c // heads) ** -0.5
    return (att.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, nq, c)


def _head(s, tokens, feat):
    """OSTrack's forward_head + CenterPredictor + cal_bbox, BN in eval mode."""
    b, n, c = tokens.shape
    fmap = tokens.unsqueeze(-1).permute(0, 3, 2, 1).contiguous().view(-1, c, feat, feat)
    maps = {}
    for branch in ("ctr", "offset", "size"):
        y = fmap
        for i in range(1, 5):
            p = f"box_head.conv{i}_{branch}"
            y = F.conv2d(y, s[f"{p}.0.weight"], s[f"{p}.0.bias"], padding=1)
            y = F.batch_norm(y, s[f"{p}.1.running_mean"], s[f"{p}.1.running_var"], s[f"{p}.1.weight"], s[f"{p}.1.bias"], eps=1e-5)
            y = F.relu(y)
        maps[branch] = F.conv2d(y, s[f"box_head.conv5_{branch}.weight"], s[f"box_head.conv5_{branch}.bias"])
    score = maps["ctr"].sigmoid().clamp(1e-4, 1 - 1e-4)
    size = maps["size"].sigmoid().clamp(1e-4, 1 - 1e-4)
    idx = score.flatten(1).argmax(1, keepdim=True)
    gather = idx.unsqueeze(1).expand(b, 2, 1)
    sz = size.flatten(2).gather(2, gather).squeeze(-1)
    off = maps["offset"].flatten(2).gather(2, gather).squeeze(-1)
    box = torch.cat([(idx % feat + off[:, :1]) / feat, (idx // feat + off[:, 1:]) / feat, sz], 1)
    return score, size, maps["offset"], box


def ostrack_reference(s, z, x, heads):
    """OSTrack: joint [template; search] through every block, final norm, head on the search part."""
    depth = len({k.split(".")[2] for k in s if k.startswith("backbone.blocks.")})
    nz = s["backbone.pos_embed_z"].shape[1]
    t = torch.cat([_embed(s, z, "backbone.pos_embed_z"), _embed(s, x, "backbone.pos_embed_x")], 1)
    for i in range(depth):
        b = f"backbone.blocks.{i}"
        h = _ln(s, f"{b}.norm1", t)
        q, k, v = (h @ s[f"{b}.attn.qkv.weight"].T + s[f"{b}.attn.qkv.bias"]).chunk(3, -1)
        t = t + _attend(q, k, v, heads) @ s[f"{b}.attn.proj.weight"].T + s[f"{b}.attn.proj.bias"]
        t = t + _mlp(s, b, _ln(s, f"{b}.norm2", t))
    t = _ln(s, "backbone.norm", t)
    return _head(s, t[:, nz:], int(math.isqrt(t.shape[1] - nz)))


def _cae_block(s, i, t, len_t, heads):
    """LiteTrack's Block.forward with MixedCrossAttention: template part (first len_t) unchanged."""
    b = f"backbone.blocks.{i}"
    x_t, x_s = t[:, :len_t], t[:, len_t:]
    h = _ln(s, f"{b}.norm1", torch.cat([x_t, x_s], 1))
    q_bias, v_bias = s[f"{b}.attn.q_bias"], s[f"{b}.attn.v_bias"]
    qkv_bias = torch.cat([q_bias, torch.zeros_like(v_bias), v_bias])
    q, k, v = (h @ s[f"{b}.attn.qkv.weight"].T + qkv_bias).chunk(3, -1)
    y_s = _attend(q[:, len_t:], k, v, heads)
    y = torch.cat([x_t, y_s], 1) @ s[f"{b}.attn.proj.weight"].T + s[f"{b}.attn.proj.bias"]
    x_s = x_s + s[f"{b}.gamma_1"] * y[:, len_t:]
    x_s = x_s + s[f"{b}.gamma_2"] * _mlp(s, b, _ln(s, f"{b}.norm2", x_s))
    return torch.cat([x_t, x_s], 1)


def litetrack_reference(s, z, x, ai_layers, heads):
    """LiteTrack: forward_z through all blocks, then forward_zx; no final norm."""
    depth = len({k.split(".")[2] for k in s if k.startswith("backbone.blocks.")})
    zf = _embed(s, z, "backbone.pos_embed_z")
    for i in range(depth):
        zf = _cae_block(s, i, zf, 0, heads)
    t = _embed(s, x, "backbone.pos_embed_x")
    for i in range(depth - ai_layers):
        t = _cae_block(s, i, t, 0, heads)
    t = torch.cat([zf, t], 1)
    for i in range(depth - ai_layers, depth):
        t = _cae_block(s, i, t, zf.shape[1], heads)
    return _head(s, t[:, -s["backbone.pos_embed_x"].shape[1]:], X_SIZE // PATCH)


@pytest.fixture
def inputs():
    return torch.randn(2, 3, Z_SIZE, Z_SIZE), torch.randn(2, 3, X_SIZE, X_SIZE)


def _assert_outputs_match(out, ref):
    for got, want in zip(out, ref):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_ostrack_checkpoint_is_a_teacher_computing_ostrack(tmp_path, inputs):
    state = ostrack_state()
    # Saturate the size branch so OSTrack's clamp of the size map to [1e-4, 1 - 1e-4] shows.
    state["box_head.conv5_size.bias"] = torch.tensor([20.0, -20.0])
    torch.save({"net": state, "epoch": 300, "net_type": "OSTrack"}, tmp_path / "OSTrack_ep0300.pth.tar")
    loaded = load_tracker(tmp_path / "OSTrack_ep0300.pth.tar")
    model = loaded.model
    assert isinstance(model, JointTracker) and not model.training
    assert loaded.source_format == "ostrack"  # its students learn OSTrack's heat-map target
    assert (model.cfg.embed_dim, model.cfg.num_heads, model.depth) == (DIM, HEADS, 3)
    assert (model.cfg.template_size, model.cfg.search_size) == (Z_SIZE, X_SIZE)
    assert model.cfg.head_channels == (32, 16, 8, 4) and model.cfg.final_norm
    with torch.no_grad():
        _assert_outputs_match(model(*inputs), ostrack_reference(state, *inputs, HEADS))


def test_litetrack_checkpoint_is_a_student_computing_litetrack(tmp_path, inputs):
    state = litetrack_state(depth=5)
    torch.save({"net": state}, tmp_path / "litetrack.pth")
    model = load_checkpoint(tmp_path / "litetrack.pth", ai_layers=2)
    assert isinstance(model, AsyncTracker)
    assert model.spec.name == "B5-2" and model.cfg.layer_scale and not model.cfg.final_norm
    with torch.no_grad():
        _assert_outputs_match(model(*inputs), litetrack_reference(state, *inputs, 2, HEADS))
        # The template branch caches once; the frame step alone gives the same result.
        _assert_outputs_match(model.frame(model.template(inputs[0]), inputs[1]), model(*inputs))


def test_litetrack_published_depth_gives_its_interaction_layers(tmp_path):
    torch.save({"net": litetrack_state(depth=4)}, tmp_path / "b4.pth")
    assert load_checkpoint(tmp_path / "b4.pth").spec.name == "B4-2"
    torch.save({"net": litetrack_state(depth=5)}, tmp_path / "b5.pth")
    with pytest.raises(PrunesearchError, match="interaction layers"):
        load_checkpoint(tmp_path / "b5.pth")


def test_ostrack_teacher_prunes_into_a_student(tmp_path, small_cfg):
    state = ostrack_state(depth=4)
    torch.save({"net": state}, tmp_path / "ost.pth")
    as_teacher = load_tracker(tmp_path / "ost.pth", into="teacher")
    as_student = load_tracker(tmp_path / "ost.pth", depth=3, ai_layers=1, rule="uniform")
    teacher, student = as_teacher.model, as_student.model
    assert student.spec.blocks == (0, 2, 3) and student.spec.name == "B3-1"
    assert as_teacher.source_format == as_student.source_format == "ostrack"
    expected = student_from_teacher(teacher, 3, 1, "uniform").state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in student.state_dict().items())


def test_vit_b_shapes_infer_the_vit_b_preset():
    state, ignored = map_external(ostrack_state(dim=768, depth=12, z_size=128, x_size=256, channel=256), "ostrack")
    assert state["blocks.11.attn.qkv.weight"].shape == (2304, 768)
    assert ignored == ("backbone.cls_token", "backbone.pos_embed")
    assert infer_config(state, "OSTrack-256") == get_preset("vit-b")


def test_mismatches_are_named_in_one_error(tmp_path):
    state = ostrack_state()
    del state["backbone.blocks.1.mlp.fc2.bias"]
    state["backbone.blocks.0.attn.relative_position_bias_table"] = torch.zeros(HEADS, 10)
    state["box_head.conv5_size.bias"] = torch.zeros(3)
    torch.save({"net": state}, tmp_path / "bad.pth")
    with pytest.raises(PrunesearchError) as err:
        load_checkpoint(tmp_path / "bad.pth")
    message = str(err.value)
    assert "\n" not in message
    for name in ("backbone.blocks.1.mlp.fc2.bias", "backbone.blocks.0.attn.relative_position_bias_table", "box_head.conv5_size.bias (3,) != (2,)"):
        assert name in message


def test_litetrack_block_without_v_bias_is_reported(tmp_path):
    state = litetrack_state()
    del state["backbone.blocks.2.attn.v_bias"]
    torch.save({"net": state}, tmp_path / "bad.pth")
    with pytest.raises(PrunesearchError, match=r"backbone\.blocks\.2\.attn\.q_bias/v_bias"):
        load_checkpoint(tmp_path / "bad.pth", ai_layers=1)


def test_key_outside_backbone_and_head_is_unexpected(tmp_path):
    state = ostrack_state()
    state["neck.weight"] = torch.zeros(1)
    torch.save({"net": state}, tmp_path / "bad.pth")
    with pytest.raises(PrunesearchError, match=r"unexpected keys \[neck\.weight\]"):
        load_checkpoint(tmp_path / "bad.pth")


class TrainingSettings:
    """Stands for the pytracking 'settings' object that OSTrack's trainer pickles."""


def test_checkpoint_needing_arbitrary_pickle_is_refused(tmp_path):
    torch.save({"net": ostrack_state(), "settings": TrainingSettings()}, tmp_path / "full.pth.tar")
    with pytest.raises(PrunesearchError, match="arbitrary code") as err:
        load_checkpoint(tmp_path / "full.pth.tar")
    assert "TrainingSettings" in str(err.value) and "\n" not in str(err.value)


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PrunesearchError, match="cannot load"):
        load_checkpoint(tmp_path / "junk.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(PrunesearchError, match="not a prunesearch, OSTrack or LiteTrack"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(PrunesearchError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pth")


def test_native_checkpoint_rebuilds_its_model(tmp_path, small_teacher, crops):
    student = student_from_teacher(small_teacher, 5, 2, [0, 2, 4, 6, 11]).eval()
    loaded = load_checkpoint(save_checkpoint(student, tmp_path / "s.pt", note="x"))
    assert loaded.spec == student.spec and loaded.cfg == student.cfg
    with torch.no_grad():
        _assert_outputs_match(loaded(*crops), student(*crops))
    half = load_checkpoint(save_checkpoint(student, tmp_path / "h.pt", half=True))
    assert next(half.parameters()).dtype == torch.float32


def test_native_student_reprunes_through_its_own_block_list(tmp_path, small_teacher):
    student = student_from_teacher(small_teacher, 5, 2, [0, 2, 4, 6, 11])
    path = save_checkpoint(student, tmp_path / "s.pt")
    smaller = load_checkpoint(path, depth=3, ai_layers=1, rule=[0, 3, 4])
    assert smaller.spec.blocks == (0, 6, 11)
    assert torch.equal(smaller.blocks[1].attn.qkv.weight, small_teacher.blocks[6].attn.qkv.weight)
    assert isinstance(load_checkpoint(path, into="teacher"), JointTracker)
    with pytest.raises(PrunesearchError, match="teacher keeps every block"):
        load_checkpoint(path, into="teacher", depth=3)


def test_damaged_native_checkpoint(tmp_path, small_teacher):
    path = save_checkpoint(small_teacher, tmp_path / "t.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("norm.weight")
    torch.save(payload, path)
    with pytest.raises(PrunesearchError, match=r"missing keys \[norm\.weight\]"):
        load_checkpoint(path)
