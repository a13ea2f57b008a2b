"""The shared objective suite over every registered objective, and the MAE objective's own tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from efm import registry
from efm.errors import ConfigError
from efm.interfaces import BackboneOutput
from efm.testing import ObjectiveSuite
from efm_plugins.backbones.hiera import Hiera, hiera_test
from efm_plugins.objectives.mae import MAE, load_reference_mae

GOLDEN = Path(__file__).parent / "golden"
TINY_DECODER = {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}


class TinySpectrogram(nn.Module):
    """A small log-power STFT image ``[B, C, T]`` -> ``[B, C, S, S]`` (or ``[B, R, C, S, S]``)."""

    family: ClassVar[str] = "image"

    def __init__(self, size: int = 96, n_repr: int = 0) -> None:
        super().__init__()
        self.size, self.n_repr = size, n_repr
        self.register_buffer("window", torch.hann_window(64), persistent=False)

    def forward(self, x: torch.Tensor, **meta: Any) -> torch.Tensor:
        b, c, _ = x.shape
        frames = x.float().unfold(-1, 64, 16) * self.window  # [B, C, frames, 64]
        power = torch.fft.rfft(frames).abs().pow(2).add(1e-3).log10().transpose(-1, -2)
        img = F.interpolate(
            power.flatten(0, 1)[:, None], size=(self.size, self.size), mode="bilinear"
        )
        img = img.view(b, c, self.size, self.size)
        if self.n_repr:  # fake stacked representations: shifted copies
            img = torch.stack([img.roll(i, dims=-1) for i in range(self.n_repr)], dim=1)
        return img.to(x.dtype)

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        lead = (self.n_repr,) if self.n_repr else ()
        return (*lead, n_chans, self.size, self.size)


class TestObjectives(ObjectiveSuite):
    names = registry.names("objectives")

    def nodes(self, name: str) -> dict[str, dict[str, Any]]:
        nodes = super().nodes(name)  # assembled like the recipe: spectrogram / patch tokens
        if name == "mae":  # 96 x 96 spectrograms of the suite's 4 s epochs
            nodes["representation"].update(output_size=96, n_freqs_out=96, n_fft=256, hop_length=32)
        if name == "multi_domain":  # 0.2 s patches: 50 samples at the suite's 250 Hz
            nodes["representation"].update(patch_s=0.2)
        return nodes

    def config(self, name: str) -> dict[str, Any]:
        # raw-pixel loss here: hidden patches of noise spectrograms are unpredictable once each is
        # standardised (norm-pix loss stays near 1), while their raw level is learnable; the
        # norm-pix path is checked against the reference in test_mae_matches_reference
        return TINY_DECODER | {"norm_pix_loss": False} if name == "mae" else {}


# -- MAE ------------------------------------------------------------------------------------------
def mae_from_golden(case: str) -> tuple[MAE, dict[str, torch.Tensor]]:
    path = GOLDEN / f"{case}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    t = load_file(str(path))
    backbone = Hiera(q_pool=2, **json.loads(meta["config"]), **json.loads(meta["size"]))
    mae = MAE(backbone, nn.Identity(), **json.loads(meta["decoder"])).eval()
    sd = {k.removeprefix("weights.mae."): v for k, v in t.items() if k.startswith("weights.mae.")}
    load_reference_mae(mae, sd)
    return mae, t


@pytest.mark.parametrize("case", ["hiera2d", "hiera3d"])
def test_mae_matches_reference(case: str) -> None:
    """Loss, predictions and normalised targets of the hidden tokens equal the reference's."""
    mae, t = mae_from_golden(case)
    x, mask = t["input"], t["mask"]
    with torch.no_grad():
        r = mae.reconstruct(x, mask.view(x.shape[0], *mae.grid))
    hidden = ~r["visible"]
    torch.testing.assert_close(r["target"][hidden], t["mae.label"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r["pred"][hidden], t["mae.pred"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r["loss"], t["mae.loss"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "kept", "ratio"), [((224, 224), 19, 0.6122), ((8, 224, 224), 39, 0.9005)]
)
def test_default_mask_ratio_by_dimensionality(size, kept, ratio) -> None:
    """0.6 in 2D (19 of 49 units kept), 0.9 in 3D (39 of 392), truncated as upstream."""
    mae = MAE(hiera_test(input_size=size), nn.Identity(), **TINY_DECODER)
    assert mae.n_keep == kept and mae.mask_ratio == pytest.approx(ratio, abs=1e-4)
    mask = mae.random_mask(3, "cpu")
    assert mask.shape == (3, *mae.grid) and (mask.flatten(1).sum(1) == kept).all()


def test_mae_3d_figures_and_masked_only_loss() -> None:
    """3D (stacked representations as channels, regions as frames): figures and the loss."""
    torch.manual_seed(0)
    rep = TinySpectrogram(size=64, n_repr=2)
    mae = MAE(hiera_test(input_size=(8, 64, 64), in_chans=2), rep, **TINY_DECODER)
    assert mae.pred_stride == (1, 16, 16) and mae.decoder_pred.out_features == 16 * 16 * 2
    signal = torch.randn(2, 8, 1000) * 30
    out = mae({"signal": signal})
    assert torch.isfinite(out.loss)
    assert set(out.figures) == {"original", "masked", "reconstruction", "hidden"}
    img = rep(signal)[0]
    torch.testing.assert_close(out.figures["original"], img, rtol=1e-4, atol=1e-4)
    # recompute the loss from the pieces: mean squared error over hidden tokens only
    mask = mae.random_mask(2, "cpu")
    r = mae.reconstruct(rep(signal), mask)
    vis = r["visible"]
    assert vis.float().mean().item() == pytest.approx(1 - mae.mask_ratio)
    err = (r["pred"] - r["target"]).pow(2).mean(-1)
    torch.testing.assert_close(r["loss"], err[~vis].mean())


def test_mae_figures_2d() -> None:
    torch.manual_seed(0)
    mae = MAE(hiera_test(input_size=(64, 96), in_chans=3), nn.Identity(), **TINY_DECODER)
    x = torch.randn(2, 3, 64, 96)
    mask = mae.random_mask(2, "cpu")
    out = mae.forward_image(x, mask=mask)
    fig = out.figures
    assert all(v.shape == (3, 64, 96) and not v.requires_grad for v in fig.values())
    torch.testing.assert_close(fig["original"], x[0], rtol=1e-4, atol=1e-4)
    pix = mask[0].repeat_interleave(32, 0).repeat_interleave(32, 1)  # unit grid (2, 3) -> pixels
    assert (fig["masked"][:, ~pix] == 0).all()
    torch.testing.assert_close(fig["masked"][:, pix], x[0][:, pix], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fig["reconstruction"][:, pix], x[0][:, pix], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fig["reconstruction"][:, ~pix], x[0][:, ~pix])
    assert torch.equal(fig["hidden"], (~pix).expand(3, -1, -1))  # the mask itself, per pixel


class UnitConv(nn.Module):
    """Not a Hiera: one conv stage whose 2x2-token units follow the MAE mask contract."""

    accepts = ("image",)
    embed_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, kernel_size=16, stride=16)  # 64 x 64 -> 4 x 4 tokens

    def mask_shape(self, x: Any = None) -> tuple[int, ...]:
        return (2, 2)

    def example_input(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, 8, 64, 64)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> BackboneOutput:
        t = rearrange(self.conv(x), "b c (g h) (k w) -> b (g k) h w c", h=2, w=2)
        if mask is not None:
            t = t[mask.flatten(1)].view(x.shape[0], -1, 2, 2, 16)
        return BackboneOutput(features=t.flatten(1, -2), intermediates=[t])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).features.mean(1)


def test_mae_works_over_any_backbone_following_the_contract() -> None:
    mae = MAE(UnitConv(), nn.Identity(), mask_ratio=0.5, **TINY_DECODER)
    assert (
        mae.n_keep == 2 and mae.pred_stride == (16, 16) and len(mae.multi_scale_fusion_heads) == 1
    )
    out = mae.forward_image(torch.randn(3, 8, 64, 64))
    out.loss.backward()
    assert mae.backbone.conv.weight.grad.abs().sum() > 0


def test_mae_errors() -> None:
    with pytest.raises(ConfigError, match="keeps 0 of 4"):
        MAE(UnitConv(), nn.Identity(), mask_ratio=0.9, **TINY_DECODER)
    token = UnitConv()
    token.accepts = ("token",)
    with pytest.raises(ConfigError, match="image backbone"):
        MAE(token, nn.Identity(), **TINY_DECODER)


def test_mae_bf16_autocast() -> None:
    """bf16 autocast (the GPU training precision) runs and stays close to fp32; the loss is fp32."""
    torch.manual_seed(0)
    mae = MAE(hiera_test(input_size=(64, 96), in_chans=3), nn.Identity(), **TINY_DECODER)
    x = torch.randn(2, 3, 64, 96)
    mask = mae.random_mask(2, "cpu")
    with torch.no_grad():
        ref = mae.forward_image(x, mask=mask).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = mae.forward_image(x.bfloat16(), mask=mask).loss
    assert out.dtype == torch.float32
    assert abs(float(out) - float(ref)) < 0.05 * float(ref)
