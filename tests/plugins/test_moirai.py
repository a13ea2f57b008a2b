"""The MOIRAI / DIVER-1 backbone: golden values from the DIVER-1 release, packing, attention paths,
masking, RoPE, muP bookkeeping and the checkpoint key filter (BackboneSuite: test_backbones.py)."""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from efm import registry
from efm.interfaces import Tokens
from efm.testing.suites import requires_cuda
from efm_plugins.backbones._attention import apply_rope
from efm_plugins.backbones.moirai import (
    Moirai,
    MoiraiError,
    load_diver_checkpoint,
    pack_rows,
)
from efm_plugins.backbones.moirai_config import MoiraiConfig

GOLDEN = Path(__file__).with_name("moirai_diver1_golden.json")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread (and do not fight other test processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _synthetic(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Seeded per key, so the golden file needs no weights (same rule as the generating script)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    v = torch.randn(shape, generator=g)
    if len(shape) == 1 and ("norm" in key or "proj_in." in key and key.endswith("weight")):
        return 1.0 + 0.1 * v
    if len(shape) >= 2 and "token" not in key and "emb" not in key:
        return v / math.sqrt(math.prod(shape[1:]))
    return 0.1 * v


def _golden_tokens(patch_len: int) -> Tokens:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(2, 3, 4 * patch_len, generator=g) * 0.3
    nan = float("nan")
    pos = torch.tensor(
        [
            [[10.0, -20.0, 30.0], [-40.0, 5.0, 12.0], [nan, nan, nan]],
            [[60.0, 0.0, -10.0], [1.0, 2.0, 3.0], [-70.0, -30.0, 45.0]],
        ]
    )
    return Tokens(
        patches=x.view(2, 3, 4, patch_len),
        channel_mask=torch.ones(2, 3, dtype=torch.bool),
        ch_type=torch.zeros(2, 3, dtype=torch.long),
        ch_pos=pos / 1000.0,  # the release takes millimetres, Tokens carry metres
        modality=torch.tensor([1, 0]),  # iEEG, EEG
        subtype=torch.tensor([[3, 1, 0], [0, 0, 0]]),  # depth, grid, unknown
        sfreq=500.0,
    )


@pytest.mark.parametrize("case", range(2))
def test_matches_diver1_release(case: int, tmp_path: Path) -> None:
    """A DeepSpeed-format checkpoint in the release's key layout loads through the key filter and
    reproduces the release's forward pass (DIVER-Project/DIVER-1@fae4d7c run on CPU)."""
    gold = json.loads(GOLDEN.read_text())["cases"][case]
    p, d = gold["patch_len"], gold["d_model"]
    sd = {k: _synthetic(k, tuple(s)) for k, s in gold["keys"].items()}
    torch.save({"module": sd, "global_steps": 1}, tmp_path / "ckpt.pt")
    cfg = MoiraiConfig(d_model=d, n_layers=1, patch_len=p, mup=gold["mup"], input_scale=1.0)
    model = Moirai(cfg).eval()
    heads = load_diver_checkpoint(model, tmp_path / "ckpt.pt")
    built = registry.create("backbones", "moirai_test", **{**cfg.__dict__,
                            "diver_checkpoint": str(tmp_path / "ckpt.pt")})  # fmt: skip
    for k, v in model.state_dict().items():
        torch.testing.assert_close(built.state_dict()[k], v)
    assert set(heads) >= {"time.weight", "time.bias", "fft.weight", "fft.bias"}
    with torch.no_grad():
        y = model(_golden_tokens(p)).features.view(2, 3, 4, d)
    assert list(y.shape) == gold["out_shape"]
    ref = torch.tensor(gold["out_subset"])
    torch.testing.assert_close(y[..., ::37].flatten(), ref, rtol=1e-4, atol=2e-5)
    assert float(y.abs().mean()) == pytest.approx(gold["out_absmean"], rel=1e-5)
    if "time_head_subset" in gold:  # plain Linear heads (no muP) map one to one
        t = torch.nn.functional.linear(y, heads["time.weight"], heads["time.bias"])
        torch.testing.assert_close(
            t[..., ::7].flatten(), torch.tensor(gold["time_head_subset"]), rtol=1e-4, atol=2e-5
        )


def test_checkpoint_of_another_width_is_refused() -> None:
    gold = json.loads(GOLDEN.read_text())["cases"][0]
    sd = {k: _synthetic(k, tuple(s)) for k, s in gold["keys"].items()}
    model = Moirai(MoiraiConfig(d_model=64, n_layers=1, patch_len=50))
    with pytest.raises(MoiraiError, match="does not fit"):
        load_diver_checkpoint(model, {"module": sd})


def test_parameter_counts_match_diver1() -> None:
    """DIVER-1 Tiny-0.1 s and Small-1 s: the release's counts minus heads and ``mask_encoding``."""
    with torch.device("meta"):
        tiny = Moirai(MoiraiConfig(d_model=256, patch_len=50))
        small = Moirai(MoiraiConfig(d_model=512, patch_len=500))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # release totals 12_724_846 / 51_359_664 include heads (time+fft [+stft]) and mask_encoding
    assert count(tiny) == 12_724_846 - (50 + 200) * 257 - 50
    assert count(small) == 51_359_664 - (500 + 200 + 700) * 513 - 500


def _varied_batch(patch_len: int = 50, counts=(3, 6, 1, 5), n: int = 5) -> Tokens:
    tok = Moirai(MoiraiConfig(d_model=64, n_layers=1, patch_len=patch_len)).example_input(
        len(counts), n_chans=max(counts), n_patches=n
    )
    tok.channel_mask = torch.arange(max(counts))[None] < torch.tensor(counts)[:, None]
    tok.patches = tok.patches * tok.channel_mask[..., None, None]
    return tok


def _model(**kw) -> Moirai:
    torch.manual_seed(0)
    return Moirai(MoiraiConfig(d_model=64, n_layers=2, patch_len=50, dropout=0.0, **kw)).eval()


def test_packed_equals_padded() -> None:
    tok = _varied_batch()
    padded = _model()
    packed = _model(pack=True, pack_len=64)
    with torch.no_grad():
        a = padded(tok).features
        b = packed(tok).features
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert pack_rows([5, 3, 4, 2], 7) == ([0, 1, 1, 0], [0, 4, 0, 5])  # FFD: 5+2, 4+3


def test_padding_channels_change_nothing() -> None:
    """A sample alone equals the same sample padded with masked channels inside a batch."""
    tok = _varied_batch()
    model = _model()
    c = int(tok.channel_mask[0].sum())
    alone = Tokens(
        tok.patches[:1, :c],
        tok.channel_mask[:1, :c],
        tok.ch_type[:1, :c],
        tok.ch_pos[:1, :c],
        tok.modality[:1],
        tok.subtype[:1, :c],
        tok.sfreq,
    )
    with torch.no_grad():
        full = model(tok).features.view(4, 6, 5, -1)[0, :c]
        one = model(alone).features.view(1, c, 5, -1)[0]
    torch.testing.assert_close(full, one, rtol=1e-4, atol=1e-5)


def test_sdpa_equals_flex_forward() -> None:
    """Same features from the dense-bias SDPA path and FlexAttention with block masks (packed rows,
    grouped-query attention); FlexAttention has no CPU backward in torch 2.13, see the CUDA test."""
    tok = _varied_batch()
    with torch.no_grad():
        a, b = (_model(attention=k, pack=True, kv_groups=1)(tok).features for k in ("sdpa", "flex"))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@requires_cuda
def test_sdpa_equals_flex_backward_on_cuda() -> None:
    tok = _varied_batch()
    tok = replace(
        tok,
        **{
            f: getattr(tok, f).cuda()
            for f in ("patches", "channel_mask", "ch_type", "ch_pos", "modality", "subtype")
        },
    )
    outs, grads = [], []
    for backend in ("sdpa", "flex"):
        model = _model(attention=backend, pack=True).cuda()
        feats = model(tok).features
        feats.square().mean().backward()
        outs.append(feats.detach())
        grads.append(model.encoder.layers[0].attn.var_bias.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_masked_patches_are_zeroed_before_embedding() -> None:
    model = _model()
    tok = model.example_input(2)
    mask = torch.rand(2, *model.mask_shape(tok)) > 0.5
    zeroed = replace(tok, patches=tok.patches * mask[..., None])
    with torch.no_grad():
        torch.testing.assert_close(model(tok, mask=mask).features, model(zeroed).features)


def test_channel_permutation_equivariance() -> None:
    """Variate ids are only compared for equality: permuting channels permutes the outputs."""
    model = _model()
    tok = model.example_input(1, n_chans=5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    moved = replace(tok, patches=tok.patches[:, perm], ch_pos=tok.ch_pos[:, perm])
    with torch.no_grad():
        a = model(tok).features.view(1, 5, 6, -1)[:, perm]
        b = model(moved).features.view(1, 5, 6, -1)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_rope_is_relative_and_partial(fraction: float) -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 32, generator=g)
    t = lambda i: torch.tensor([[i]])  # noqa: E731
    dot = lambda i, j: float(  # noqa: E731
        (apply_rope(q, t(i), fraction, 1e4) * apply_rope(k, t(j), fraction, 1e4)).sum()
    )
    assert dot(3, 1) == pytest.approx(dot(9, 7), abs=1e-4)  # depends on i - j only
    assert abs(dot(3, 1) - dot(3, 2)) > 1e-3
    rotated = apply_rope(q, t(5), fraction, 1e4)
    keep = int(32 * fraction)
    torch.testing.assert_close(rotated[..., keep:], q[..., keep:])


def test_mup_multipliers_and_roles() -> None:
    model = registry.create("backbones", "moirai_test", d_model=128)
    mult, roles = model.lr_multipliers(), model.param_roles()
    assert mult["encoder.layers.0.attn.q_proj.weight"] == pytest.approx(256 / 128)
    assert mult["encoder.layers.1.ffn.fc2.weight"] == pytest.approx(1024 / 512)
    assert mult["spectral_proj.weight"] == pytest.approx(129 / 65)
    for name in (
        "encoder.norm.weight",
        "n_token",
        "encoder.layers.0.attn.var_bias.weight",
        "patch_embed.proj_in.0.weight",
        "modality_embed.weight",
    ):
        assert mult[name] == 1.0 and roles[name] == "vector", name
    assert roles["patch_embed.proj_in.3.weight"] == "hidden"
    assert model.encoder.layers[0].attn.scale == pytest.approx(1 / 32)
    sp = registry.create("backbones", "moirai_test", mup=False)
    assert set(sp.lr_multipliers().values()) == {1.0}
    assert sp.encoder.layers[0].attn.scale == pytest.approx(32**-0.5)
    head = model.readout(10)
    assert head.mult == pytest.approx(256 / 128) and float(head.weight.detach().abs().sum()) == 0.0


def test_wrong_patch_length_is_a_clear_error() -> None:
    model = _model()
    tok = model.example_input(1)
    with pytest.raises(MoiraiError, match="patch_len"):
        model(replace(tok, patches=tok.patches[..., :40]))


def test_embed_window_averages_window_embeddings() -> None:
    model = _model(embed_window=5)
    tok = model.example_input(2, n_patches=11)  # two windows of 5, the last patch dropped
    with torch.no_grad():
        whole = model.embed(tok)
        halves = [
            Moirai.embed(_model(), replace(tok, patches=tok.patches[:, :, i * 5 : (i + 1) * 5]))
            for i in range(2)
        ]
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2)
