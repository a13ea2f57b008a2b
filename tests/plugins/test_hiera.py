"""Hiera: equality with the reference implementation on shared weights, layout and options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from efm import registry
from efm.errors import ConfigError
from efm_plugins.backbones import hiera
from efm_plugins.backbones.hiera import Hiera, undo_windowing

GOLDEN = Path(__file__).parent / "golden"


def golden(case: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metadata and tensors of a golden file made by the reference implementation."""
    path = GOLDEN / f"{case}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return meta, load_file(str(path))


def reference_model(case: str, q_pool: int, num_classes: int) -> tuple[Hiera, dict]:
    meta, t = golden(case)
    cfg = json.loads(meta["config"]) | json.loads(meta["size"])
    model = Hiera(q_pool=q_pool, num_classes=num_classes, **cfg).eval()
    sd = {k.removeprefix("weights.mae."): v for k, v in t.items() if k.startswith("weights.mae.")}
    sd |= {k.removeprefix("weights.cls."): v for k, v in t.items() if k.startswith("weights.cls.")}
    model.load_reference_state_dict(sd)
    return model, t


@pytest.mark.parametrize("case", ["hiera2d", "hiera3d"])
def test_matches_reference(case: str) -> None:
    """Classifier probabilities and every stage's features, with and without a mask."""
    model, t = reference_model(case, q_pool=3, num_classes=5)
    x, mask = t["input"], t["mask"]
    with torch.no_grad():
        probs = model.classify(x).softmax(dim=-1)
        plain = model(x)
        masked = model(x, mask=mask.view(x.shape[0], *model.mask_shape()))
    torch.testing.assert_close(probs, t["cls.probs"], rtol=1e-5, atol=1e-6)
    assert len(plain.intermediates) == len(masked.intermediates) == 4
    for i, (a, b) in enumerate(zip(plain.intermediates, masked.intermediates)):
        torch.testing.assert_close(a, t[f"cls.inter.{i}"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b, t[f"cls.masked_inter.{i}"], rtol=1e-5, atol=1e-5)
    # features are the last stage, flattened in raster order
    torch.testing.assert_close(
        plain.features, t["cls.inter.3"].flatten(1, -2), rtol=1e-5, atol=1e-5
    )


def test_reference_mae_checkpoint_loads_without_norm() -> None:
    """An MAE checkpoint has no final ``norm``; decoder keys are skipped, nothing else is missing."""
    _, t = golden("hiera2d")
    sd = {k.removeprefix("weights.mae."): v for k, v in t.items() if k.startswith("weights.mae.")}
    model = Hiera(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), input_size=(64, 96), in_chans=3)
    result = model.load_reference_state_dict(sd)
    assert set(result.missing_keys) == {"norm.weight", "norm.bias"}
    with pytest.raises(ConfigError, match="does not fit"):  # 8 input channels: stem shape differs
        Hiera(
            embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), input_size=(64, 96)
        ).load_reference_state_dict(sd)


# parameter counts of the reference models (3 input channels, 1000-class head), architectures.md §1.4
REFERENCE_PARAMS_M = {
    "tiny": 27.9,
    "small": 35.0,
    "base": 51.5,
    "base_plus": 69.9,
    "large": 213.7,
    "huge": 672.8,
}


@pytest.mark.parametrize("size", list(REFERENCE_PARAMS_M))
def test_size_parameter_counts(size: str) -> None:
    with torch.device("meta"):
        model = getattr(hiera, f"hiera_{size}")(in_chans=3, num_classes=1000)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == REFERENCE_PARAMS_M[size]


def test_every_size_is_registered() -> None:
    names = registry.names("backbones", "hiera_*")
    assert names == sorted(f"hiera_{s}" for s in [*REFERENCE_PARAMS_M, "test"])
    assert registry.get("backbones", "hiera_base").meta["accepts"] == ("image",)


def small(**cfg) -> Hiera:
    torch.manual_seed(0)
    return hiera.hiera_test(**({"input_size": (64, 96)} | cfg)).eval()


@pytest.mark.parametrize("size", [(64, 96), (2, 64, 64)])
def test_all_visible_mask_is_the_unmasked_model(size) -> None:
    """With every unit visible, the per-unit layout re-tiles to the unmasked feature maps."""
    model = small(input_size=size)
    x = model.example_input(2)
    grid = model.mask_shape(x)
    with torch.no_grad():
        plain = model(x)
        full = model(x, mask=torch.ones(2, *grid, dtype=torch.bool))
    for a, b, unit in zip(plain.intermediates, full.intermediates, model.stage_units):
        torch.testing.assert_close(undo_windowing(b.flatten(1, len(grid)), grid, unit), a)


def test_hidden_units_do_not_leak() -> None:
    """Changing the pixels of hidden units changes nothing (masked stem, dropped tokens)."""
    model = small()
    x = model.example_input(2)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, [1, 4]] = True  # grid (2, 3): keep units (0, 1) and (1, 1)
    y = x.clone()
    y[..., :32, :32] += 100.0  # unit (0, 0), hidden
    y[..., 32:, 64:] -= 50.0  # unit (1, 2), hidden
    with torch.no_grad():
        a = model(x, mask=mask.view(2, 2, 3))
        b = model(y, mask=mask.view(2, 2, 3))
    torch.testing.assert_close(a.features, b.features)
    assert a.features.shape == (2, 2 * 4, model.embed_dim)  # 2 units x 2x2 final tokens


def test_attention_runs_sdpa_on_4d_tensors(monkeypatch) -> None:
    """The fused SDPA kernels need 4-D q/k/v (upstream passes 5-D ones)."""
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append(q.ndim)
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(hiera.F, "scaled_dot_product_attention", spy)
    model = small()
    with torch.no_grad():
        model(model.example_input(1))
    assert seen and set(seen) == {4}


def test_3d_takes_frames_without_channel_axis() -> None:
    """EPI-250k 3D: one representation, the 8 regions as frames; ``[B, 8, H, W]`` is accepted."""
    model = small(input_size=(8, 64, 64))
    assert model.in_chans == 1 and model.mask_shape() == (8, 2, 2)
    assert tuple(model.patch_embed.proj.kernel_size) == (1, 7, 7)
    x = model.example_input(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, 0]).features, model(x).features)
    assert hasattr(model, "pos_embed_temporal") and model.pos_embed_temporal.shape[1] == 8


def test_activation_checkpointing_same_gradients() -> None:
    a, b = small(), small(activation_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = a.example_input(2)
    grads = []
    for m in (a, b):
        m.train()
        m(x).features.pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_drop_path_only_in_training() -> None:
    model = small(drop_path_rate=0.5)
    x = model.example_input(4)
    with torch.no_grad():
        e1, e2 = model.embed(x), model.embed(x)
        model.train()
        torch.manual_seed(5)
        t1 = model.embed(x)
    torch.testing.assert_close(e1, e2)
    assert not torch.allclose(e1, t1)


def test_bf16_autocast_close_to_fp32() -> None:
    model = small()
    x = model.example_input(2)
    with torch.no_grad():
        ref = model.embed(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.embed(x)
    assert torch.isfinite(out).all()
    assert ((out.float() - ref).abs().mean() / ref.abs().mean()) < 0.05


def test_bad_inputs_and_configs_raise_clear_errors() -> None:
    model = small()
    with pytest.raises(ConfigError, match=r"built for inputs \[B, 8, 64, 96\]"):
        model(torch.zeros(1, 8, 64, 64))
    with pytest.raises(ConfigError) as err:
        hiera.hiera_test(input_size=(100, 96), mask_unit_size=(4, 4))
    assert "mask_unit_size" in str(err.value) and "input_size[0]=100" in str(err.value)
    with pytest.raises(ConfigError, match="2 \\(H, W\\) or 3"):
        hiera.hiera_test(input_size=(64,))
    with pytest.raises(ValueError, match="same, non-zero number"):
        mask = torch.zeros(2, 6, dtype=torch.bool)
        mask[0, 0] = mask[1, :2] = True
        model(model.example_input(2), mask=mask)


def test_reference_weights_refuse_another_q_pool() -> None:
    """q_pool has no parameters, so a reference classifier (q_pool=3) loaded silently into efm's
    default q_pool=2 and computed something else (last stage 2x the grid, other logits)."""
    meta, t = golden("hiera2d")
    cfg = json.loads(meta["config"]) | json.loads(meta["size"])
    sd = {k.removeprefix("weights.mae."): v for k, v in t.items() if k.startswith("weights.mae.")}
    sd |= {k.removeprefix("weights.cls."): v for k, v in t.items() if k.startswith("weights.cls.")}
    wrong = Hiera(q_pool=2, num_classes=5, **cfg).eval()
    with pytest.raises(
        ConfigError, match=r"made for q_pool=3 \(a reference classifier\).*q_pool=2"
    ):
        wrong.load_reference_state_dict(sd)
    wrong.load_reference_state_dict(sd, q_pool=2)  # deliberately, as the caller says
    with torch.no_grad():
        logits = wrong.classify(t["input"])
        grid = wrong(t["input"]).intermediates[-1].shape[1:3]
    right, _ = reference_model("hiera2d", q_pool=3, num_classes=5)
    with torch.no_grad():
        ref_logits = right.classify(t["input"])
        ref_grid = right(t["input"]).intermediates[-1].shape[1:3]
    assert tuple(grid) == (4, 6) and tuple(ref_grid) == (2, 3)  # 2x the reference grid
    rel = float((logits - ref_logits).norm() / ref_logits.norm())
    assert rel > 0.01, rel  # 3.7% here (the reference hiera_base_224: about 13%)
    # an MAE checkpoint (decoder keys, no head) is a q_pool=2 model; neither kind must say
    mae_sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    with pytest.raises(ConfigError, match=r"made for q_pool=2 \(a reference MAE model\)"):
        Hiera(q_pool=3, **cfg).load_reference_state_dict(mae_sd)
    bare = {k: v for k, v in mae_sd.items() if not k.startswith(hiera._MAE_ONLY)}
    with pytest.raises(ConfigError, match="cannot tell which q_pool"):
        Hiera(**cfg).load_reference_state_dict(bare)
    Hiera(**cfg).load_reference_state_dict(bare, q_pool=2)


def test_architecture_lists_what_shapes_cannot_tell() -> None:
    a = Hiera(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), input_size=(64, 64), q_pool=3)
    arch = a.architecture()
    assert arch["q_pool"] == 3 and arch["q_stride"] == [2, 2] and arch["stages"] == [1, 1, 2, 1]
    assert json.loads(json.dumps(arch)) == arch  # JSON-able (safetensors metadata)
