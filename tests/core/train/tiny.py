"""Tiny components for engine tests: a framing representation, an MLP backbone, a masked objective.

They follow the efm interfaces and are registered per test by :func:`register_tiny` (the real Hiera
and MAE are tested by their own suites; these keep the engine's tests fast and independent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from efm import registry
from efm.interfaces import BackboneOutput, ObjectiveOutput


@dataclass
class TinyRepConfig:
    frame: int = 10


@dataclass
class TinyBackboneConfig:
    n_chans: int = 8
    frame: int = 10
    dim: int = 32


@dataclass
class TinyObjectiveConfig:
    mask_ratio: float = 0.5


class TinyRep(nn.Module):
    """[B, C, T] µV -> [B, C, N, F] frames of ``frame`` samples, scaled to about unit variance."""

    family = "image"

    def __init__(self, frame: int = 10) -> None:
        super().__init__()
        self.frame = frame

    def forward(self, x: torch.Tensor, **meta) -> torch.Tensor:
        n = x.shape[-1] // self.frame
        return rearrange(x[..., : n * self.frame], "b c (n f) -> b c n f", f=self.frame) / 30.0

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        return (n_chans, n_times // self.frame, self.frame)


class TinyBackbone(nn.Module):
    """Frames of all channels -> tokens -> two residual MLP blocks."""

    accepts = ("image",)

    def __init__(self, n_chans: int = 8, frame: int = 10, dim: int = 32) -> None:
        super().__init__()
        self.n_chans, self.frame, self.embed_dim = n_chans, frame, dim
        self.patch_embed = nn.Linear(n_chans * frame, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
            )
            for _ in range(2)
        )
        self.mix = nn.ModuleList(nn.Conv1d(dim, dim, 5, padding=2, groups=dim) for _ in range(2))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> BackboneOutput:
        tokens = self.patch_embed(rearrange(x, "b c n f -> b n (c f)"))  # [B, N, D]
        if mask is not None:
            tokens = tokens * mask[..., None]
        for block, mix in zip(self.blocks, self.mix):
            tokens = tokens + rearrange(mix(rearrange(tokens, "b n d -> b d n")), "b d n -> b n d")
            tokens = tokens + block(tokens)
        return BackboneOutput(self.norm(tokens))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).features.mean(dim=1)

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[2],)

    def example_input(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.n_chans, 20, self.frame)


class TinyMasked(nn.Module):
    """Masked-frame reconstruction: MSE on the hidden frames."""

    def __init__(
        self, backbone: nn.Module, representation: nn.Module, mask_ratio: float = 0.5
    ) -> None:
        super().__init__()
        self.backbone, self.representation, self.mask_ratio = backbone, representation, mask_ratio
        self.decoder_pred = nn.Linear(backbone.embed_dim, backbone.n_chans * backbone.frame)

    def forward(self, batch: dict) -> ObjectiveOutput:
        x = self.representation(batch["signal"])  # [B, C, N, F]
        visible = torch.rand(x.shape[0], x.shape[2], device=x.device) >= self.mask_ratio  # [B, N]
        feats = self.backbone(x, mask=visible).features
        pred = rearrange(self.decoder_pred(feats), "b n (c f) -> b c n f", c=x.shape[1])
        hidden = (~visible)[:, None, :, None].to(x.dtype)
        loss = ((pred.float() - x.float()) ** 2 * hidden).sum() / (
            hidden.sum() * x.shape[1] * x.shape[3]
        ).clamp(min=1)
        figures = {
            "original": x.detach(),
            "masked": (x * (1 - hidden)).detach(),
            "reconstruction": pred.detach(),
        }
        return ObjectiveOutput(loss, {"visible": float(visible.float().mean())}, figures)


def register_tiny() -> None:
    """Register ``tiny_rep``, ``tiny_mlp`` and ``tiny_masked`` in the current registry."""
    reg = registry.get_registry()
    if "tiny_mlp" in reg.tables["backbones"]:
        return
    reg.register_callback("tokenizers", "tests", "tests")(
        "tiny_rep", TinyRep, TinyRepConfig, family="image"
    )
    reg.register_callback("backbones", "tests", "tests")(
        "tiny_mlp", TinyBackbone, TinyBackboneConfig, accepts=("image",)
    )
    reg.register_callback("objectives", "tests", "tests")(
        "tiny_masked", TinyMasked, TinyObjectiveConfig
    )


def tiny_config(run_dir, **train) -> dict:
    """A validated config of the tiny components on synthetic shards (8 channels, 4 s at 50 Hz)."""
    from efm.config import validate

    register_tiny()
    t = {
        "steps": 30,
        "batch_size": 8,
        "num_workers": 0,
        "shuffle_buffer": 16,
        "log_every": 5,
        "ckpt_every": 10,
        "run_dir": str(run_dir),
        "progress": False,
    } | train
    return validate(
        {
            "recipe": "tiny",
            "representation": {"name": "tiny_rep"},
            "backbone": {"name": "tiny_mlp"},
            "objective": {"name": "tiny_masked"},
            "optim": {"warmup_steps": 5, "adamw_lr": 3e-3, "muon_lr": 0.02},
            "train": t,
            "eval": {"tasks": ["seizure"], "seeds": 2, "batch_size": 16},
        }
    )
