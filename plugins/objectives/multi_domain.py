"""DIVER-1's masked multi-domain reconstruction objective.

DIVER-1 (arXiv 2512.19097; DIVER-Project/DIVER-1 @ fae4d7c, ``models/header.py`` and
``models/target_representation_functions.py``): Bernoulli(0.5) masking of (channel, patch) tokens,
masked patches zero-filled before the embedder, one linear head per domain on the encoder's token
features, losses on the masked patches: time MSE (1.0), ``log1p`` FFT amplitude at 1 Hz bins up to
200 Hz (0.1 for 1 s patches, 1.0 for 0.1 s), two-scale ``log1p`` STFT amplitude (1 s patches, 1.0).

At sampling rates other than 500 Hz the spectral targets keep their durations: a 1 s FFT (1 Hz bins)
and STFT windows of 0.4 s / 0.1 s with half-window hops.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from efm.errors import EfmError
from efm.interfaces import ObjectiveOutput, Tokens, represent
from efm_plugins.objectives.multi_domain_config import MultiDomainConfig
from efm_plugins.tokenizers.targets import fft_amplitude, stft_amplitude, stft_amplitude_size

log = logging.getLogger("efm.plugins.multi_domain")


def spectral_layout(patch_len: int, sfreq: float, max_hz: float) -> dict[str, Any]:
    """FFT length and bins, and STFT scales ``(n_fft, hop, n_bins)`` for patches at ``sfreq``."""
    n_fft = max(round(sfreq), patch_len)  # 1 Hz bins (500 at 500 Hz)
    fft_bins = min(int(max_hz // (sfreq / n_fft)), n_fft // 2 + 1)
    scales = []
    for win_s in (0.4, 0.1):  # 200 / 50 samples at 500 Hz
        n = round(win_s * sfreq)
        scales.append((n, n // 2, min(int(max_hz // (sfreq / n)), n // 2 + 1)))
    return {"n_fft": n_fft, "fft_bins": fft_bins, "scales": tuple(scales)}


class MultiDomain(nn.Module):
    """Masked multi-domain reconstruction over a token backbone (see the module docstring).

    ``forward(batch)`` takes ``batch["signal"] [B, C, T]`` (µV) and optional ``batch["meta"]`` (the
    shards' per-sample metadata, passed to the representation). Logs ``loss_time``, ``loss_fft``,
    ``loss_stft`` and ``mask_frac``. :meth:`lr_multipliers` / :meth:`param_roles` extend the
    backbone's muP interface with ``backbone.`` prefixes; the heads are read-outs (base LR).
    """

    def __init__(self, backbone: Any, representation: Any, cfg: MultiDomainConfig) -> None:
        super().__init__()
        if "token" not in getattr(backbone, "accepts", ()):
            raise EfmError("multi_domain needs a backbone that accepts token representations")
        self.backbone, self.representation, self.cfg = backbone, representation, cfg
        p = int(representation.patch_len)
        sfreq = float(representation.sfreq)
        self.patch_len, self.sfreq = p, sfreq
        max_hz = sfreq / 2 if cfg.max_hz is None else float(cfg.max_hz)
        self.layout = spectral_layout(p, sfreq, max_hz)
        self.use_stft = cfg.stft if cfg.stft is not None else p >= round(sfreq)
        fft_w = cfg.fft_weight if cfg.fft_weight is not None else (0.1 if self.use_stft else 1.0)
        self.weights = {"time": cfg.time_weight, "fft": fft_w, "stft": cfg.stft_weight}
        make = getattr(backbone, "readout", None) or (lambda n: nn.Linear(backbone.embed_dim, n))
        heads = {"time": make(p), "fft": make(self.layout["fft_bins"])}
        if self.use_stft:
            if any(n > p for n, _, _ in self.layout["scales"]):
                raise EfmError(f"multi_domain: STFT windows do not fit {p}-sample patches")
            heads["stft"] = make(stft_amplitude_size(p, self.layout["scales"]))
        self.heads = nn.ModuleDict(heads)

    def targets(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-patch targets ``{domain: [..., n]}`` (fp32, detached) of patches ``[..., P]``."""
        x = patches.detach().float()
        legacy = self.cfg.real_part_targets
        out = {"time": x}
        out["fft"] = fft_amplitude(x, self.layout["n_fft"], self.layout["fft_bins"], legacy)
        if self.use_stft:
            out["stft"] = stft_amplitude(x, self.layout["scales"], legacy)
        return out

    def forward(self, batch: dict[str, Any]) -> ObjectiveOutput:
        x = batch["signal"]
        tokens: Tokens = represent(self.representation, batch)
        b, c, n, _ = tokens.patches.shape
        valid = tokens.channel_mask.to(x.device, torch.bool)[:, :, None].expand(b, c, n)
        drop = torch.rand(b, c, n, device=x.device) < self.cfg.mask_ratio
        masked = drop & valid
        if not masked.any():  # nothing masked in a tiny batch: score every real patch
            masked = valid
        out = self.backbone(tokens, mask=~drop)
        feats = out.features.reshape(b, c, n, -1)[masked]  # [M, D]
        scale = float(getattr(self.backbone, "input_scale", 1.0))
        targets = self.targets(tokens.patches[masked] * scale)
        losses = {}
        preds = {}
        for name, head in self.heads.items():
            preds[name] = head(feats).float()
            losses[name] = (preds[name] - targets[name]).square().mean()
        loss = sum(self.weights[k] * v for k, v in losses.items())
        logs = {f"loss_{k}": float(v.detach()) for k, v in losses.items()}
        logs["mask_frac"] = float(masked.float().sum() / valid.float().sum().clamp_min(1.0))
        return ObjectiveOutput(loss, logs, self._figures(tokens, masked, preds["time"], scale))

    @torch.no_grad()
    def _figures(
        self, tokens: Tokens, masked: torch.Tensor, pred: torch.Tensor, scale: float
    ) -> dict[str, torch.Tensor]:
        """Original / masked input / reconstruction of the first sample, ``[C, N * P]`` in µV, and
        ``hidden``, the mask (bool, same shape)."""
        orig = tokens.patches.detach().float()
        recon = orig.clone()
        recon[masked] = pred.detach() / scale
        keep = (~masked[0]).float()[..., None]
        return {
            "original": orig[0].flatten(1),
            "masked": (orig[0] * keep).flatten(1),
            "reconstruction": recon[0].flatten(1),
            "hidden": (keep == 0).expand_as(orig[0]).flatten(1),  # the mask, not a panel
        }

    def param_groups(self) -> dict[str, str]:
        """The objective's own parameters, the read-out heads: AdamW (the backbone declares its own)."""
        return {n: "adamw" for n, _ in self.named_parameters() if n.startswith("heads.")}

    # -- muP interface (see Moirai.lr_multipliers) ---------------------------------------------
    def lr_multipliers(self) -> dict[str, float]:
        inner = getattr(self.backbone, "lr_multipliers", None)
        mults = {f"backbone.{k}": v for k, v in (inner() if inner else {}).items()}
        return {name: mults.get(name, 1.0) for name, _ in self.named_parameters()}

    def param_roles(self) -> dict[str, str]:
        inner = getattr(self.backbone, "param_roles", None)
        roles = {f"backbone.{k}": v for k, v in (inner() if inner else {}).items()}
        return {
            n: roles.get(n, "output" if n.startswith("heads.") else "vector")
            for n, _ in self.named_parameters()
        }

    def load_diver_heads(self, heads: dict[str, torch.Tensor]) -> None:
        """Load the head tensors returned by :func:`efm_plugins.backbones.moirai.load_diver_checkpoint`."""
        own = self.heads.state_dict()
        if set(heads) != set(own) or any(heads[k].shape != own[k].shape for k in own):
            raise EfmError(
                f"DIVER-1 heads {sorted(heads)} do not fit this objective's {sorted(own)}"
            )
        self.heads.load_state_dict(heads)


def build(backbone: Any, representation: Any, **cfg: Any) -> MultiDomain:
    """Registry builder."""
    return MultiDomain(backbone, representation, MultiDomainConfig(**cfg))
