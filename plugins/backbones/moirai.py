"""MOIRAI any-variate transformer with DIVER-1's embedder, registers and muP.

Implements:

- MOIRAI (Woo et al., "Unified Training of Universal Time Series Forecasting Transformers", ICML 2024,
  arXiv 2402.02592; SalesforceAIResearch/uni2ts): a pre-norm encoder over the flattened
  (variate, patch) tokens with a learned per-head same/different-variate attention bias, rotary time
  encoding, QK RMSNorm, gated (SiLU) FFN, grouped-query attention, no biases.
- DIVER-1 (arXiv 2512.19097; DIVER-Project/DIVER-1 @ fae4d7c): the 3-layer CNN patch embedder, the
  spectral embedding, electrode-coordinate + modality + subtype embeddings, STCPE, register tokens,
  head size 32, FFN ``4 d``, muP (``1/head_dim`` attention scale), and a key filter that loads the
  released checkpoints (:func:`load_diver_checkpoint`).

No line of the upstream code is reused. Differences from the release, on purpose: attention dropout is
off in eval mode; GroupNorm statistics and STCPE ignore padded channels (so batches may mix channel
counts, and packing gives the same result as padding); the muP bookkeeping is native (no ``mup``
package): :meth:`Moirai.lr_multipliers` gives the per-parameter Adam learning-rate multipliers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from efm.errors import EfmError
from efm.interfaces import BackboneOutput, Tokens
from efm_plugins.backbones._attention import apply_rope, segment_block_mask, variate_attention
from efm_plugins.backbones.moirai_config import MoiraiConfig

log = logging.getLogger("efm.plugins.moirai")


class MoiraiError(EfmError):
    """Bad input for the MOIRAI backbone (wrong patch length, bad checkpoint)."""


# --------------------------------------------------------------------------------------------
# encoder


class Attention(nn.Module):
    """Any-variate grouped-query attention (QK RMSNorm, RoPE, binary variate bias)."""

    def __init__(self, d: int, head_dim: int, groups: int | None, cfg: MoiraiConfig) -> None:
        super().__init__()
        self.heads = max(1, d // head_dim)
        self.head_dim = d // self.heads
        self.groups = groups or self.heads
        self.cfg = cfg
        e = self.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, e * self.groups, bias=False)
        self.v_proj = nn.Linear(d, e * self.groups, bias=False)
        self.q_norm = nn.RMSNorm(e, eps=1e-5)
        self.k_norm = nn.RMSNorm(e, eps=1e-5)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.var_bias = nn.Embedding(2, self.heads)  # row 0: other variate, row 1: same variate
        self.scale = 1.0 / e if cfg.mup else 1.0 / math.sqrt(e)

    def forward(self, x: torch.Tensor, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.head_dim
        q = self.q_norm(rearrange(self.q_proj(x), "r l (h e) -> r h l e", e=e))
        k = self.k_norm(rearrange(self.k_proj(x), "r l (g e) -> r g l e", e=e))
        v = rearrange(self.v_proj(x), "r l (g e) -> r g l e", e=e)
        q = apply_rope(q, ids["time"], self.cfg.rope_fraction, self.cfg.rope_base)
        k = apply_rope(k, ids["time"], self.cfg.rope_fraction, self.cfg.rope_base)
        drop = self.cfg.dropout if self.training else 0.0
        out = variate_attention(
            q,
            k,
            v,
            ids["var"],
            ids["seg"],
            self.var_bias.weight,
            self.scale,
            ids["backend"],
            drop,
            ids.get("block_mask"),
        )  # [R, H, L, E]
        return self.out_proj(rearrange(out, "r h l e -> r l (h e)"))


class GatedFFN(nn.Module):
    """``fc2(dropout(silu(fc_gate(x)) * fc1(x)))``, no biases."""

    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc_gate = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.silu(self.fc_gate(x)) * self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, d: int, cfg: MoiraiConfig, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(d, eps=1e-5)
        self.attn = Attention(d, cfg.head_dim, cfg.kv_groups, replace(cfg, dropout=dropout))
        self.norm2 = nn.RMSNorm(d, eps=1e-5)
        self.ffn = GatedFFN(d, int(cfg.ffn_mult * d), dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), ids))
        return x + self.ffn(self.norm2(x))


class Encoder(nn.Module):
    """A stack of :class:`Block` and a final RMSNorm, over rows ``[R, L, d]`` with id tensors."""

    def __init__(self, d: int, n_layers: int, cfg: MoiraiConfig, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(d, cfg, dropout) for _ in range(n_layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)

    def forward(
        self, x: torch.Tensor, ids: dict[str, Any], taps: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if ids["backend"] == "flex" or (ids["backend"] == "auto" and x.is_cuda):
            ids = {**ids, "backend": "flex", "block_mask": segment_block_mask(ids["seg"])}
        for layer in self.layers:
            x = layer(x, ids)
            if taps is not None:
                taps.append(x)
        return self.norm(x)


# --------------------------------------------------------------------------------------------
# embedder


def segment_group_norm(
    x: torch.Tensor, seg: torch.Tensor, n_seg: int, gn: nn.GroupNorm
) -> torch.Tensor:
    """GroupNorm of ``x [1, ch, rows, W]`` whose statistics are taken per segment of rows.

    ``seg [rows]`` names each row's sample: DIVER-1 runs the CNN on a ``[B, 1, C*N, P]`` image per
    sample, so its GroupNorm pools every patch of a sample; here the rows of all samples (padded
    channels left out) share one image and the pooling follows ``seg``.
    """
    g = gn.num_groups
    xg = rearrange(x.float(), "1 (g q) r w -> r g (q w)", g=g)  # [rows, g, q*W]
    ones = torch.ones_like(seg, dtype=xg.dtype)
    count = (xg.new_zeros(n_seg).index_add(0, seg, ones) * xg.shape[-1]).clamp_min(1.0)[:, None]
    mean = xg.new_zeros(n_seg, g).index_add(0, seg, xg.sum(-1)) / count  # [S, g]
    xc = xg - mean[seg][..., None]
    var = xg.new_zeros(n_seg, g).index_add(0, seg, xc.square().sum(-1)) / count
    out = rearrange(xc * torch.rsqrt(var[seg] + gn.eps)[..., None], "r g (q w) -> 1 (g q) r w",
                    q=x.shape[1] // g).to(x.dtype)  # fmt: skip
    return out * gn.weight[None, :, None, None] + gn.bias[None, :, None, None]


class CNNPatchEmbed(nn.Module):
    """DIVER-1's 3-layer CNN over each patch, zero-padded to a power of two, to a ``d``-dim token."""

    def __init__(self, d: int, patch_len: int) -> None:
        super().__init__()
        self.padded = 1 << max(1, math.ceil(math.log2(patch_len)))  # 50 -> 64, 500 -> 512
        self.pad = (
            (self.padded - patch_len) // 2,
            self.padded - patch_len - (self.padded - patch_len) // 2,
        )
        self.n_pos = 16 if self.padded <= 64 else 8  # output positions per patch
        if d % self.n_pos:
            raise MoiraiError(
                f"d_model {d} must be a multiple of {self.n_pos} for {patch_len}-sample patches"
            )
        h, stride = d // self.n_pos, self.padded // self.n_pos
        groups = math.gcd(self.n_pos, h)
        layers: list[nn.Module] = [
            nn.Conv2d(1, h, (1, 63), (1, stride), (0, 31)),
            nn.GroupNorm(groups, h),
            nn.GELU(),
        ]
        for _ in range(2):
            layers += [nn.Conv2d(h, h, (1, 3), 1, (0, 1)), nn.GroupNorm(groups, h), nn.GELU()]
        self.proj_in = nn.Sequential(*layers)

    def forward(self, patches: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        b, c, n, _ = patches.shape
        counts = channel_mask.sum(1)  # only real channels go through the CNN
        seg = torch.arange(b, device=patches.device).repeat_interleave(counts * n)  # [M*N]
        x = rearrange(F.pad(patches[channel_mask], self.pad), "m n p -> 1 1 (m n) p")
        for layer in self.proj_in:
            x = (
                segment_group_norm(x, seg, b, layer)
                if isinstance(layer, nn.GroupNorm)
                else layer(x)
            )
        out = rearrange(x, "1 h (m n) w -> m n (h w)", n=n)  # [M, N, d]
        return out.new_zeros(b, c, n, out.shape[-1]).index_put((channel_mask,), out)


def coord_encoding(pos_mm: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal 3-D electrode-coordinate encoding (PopT style: temperature 2000, scale 2pi/256).

    ``pos_mm [B, C, 3]`` in millimetres; channels with any NaN coordinate get zeros.
    """
    feats = width // 3 // 2 * 2
    unknown = torch.isnan(pos_mm).any(dim=-1, keepdim=True)  # [B, C, 1]
    xyz = pos_mm.float().masked_fill(unknown, 0.0) * (2.0 * math.pi / 256.0)
    idx = torch.arange(feats, device=pos_mm.device, dtype=torch.float32)
    dim_t = 2000.0 ** (2 * torch.div(idx, 2, rounding_mode="floor") / feats)
    arg = xyz[..., None] / dim_t  # [B, C, 3, feats]
    enc = torch.stack((arg[..., 0::2].sin(), arg[..., 1::2].cos()), dim=-1).flatten(-3)
    return F.pad(enc, (0, width - enc.shape[-1])).masked_fill(unknown, 0.0)  # [B, C, width]


class STCPE(nn.Module):
    """Sliding temporal conditional position encoding: a 1-layer any-variate encoder at ``d/8`` over
    all channels x ``window`` patches, zero-padded in time, outputs averaged over the windows."""

    def __init__(self, d: int, cfg: MoiraiConfig) -> None:
        super().__init__()
        w = max(8, d // 8)
        self.window = cfg.stcpe_window
        self.pack = cfg.pack
        self.down = nn.Linear(d, w)
        self.encoder = Encoder(
            w, 1, replace(cfg, head_dim=min(cfg.head_dim, w), kv_groups=None), 0.0
        )
        self.up = nn.Linear(w, d)

    def forward(self, x: torch.Tensor, channel_mask: torch.Tensor, backend: str) -> torch.Tensor:
        b, c, n, _ = x.shape
        k = self.window
        h = F.pad(self.down(x), (0, 0, k - 1, k - 1))  # [B, C, N + 2(k-1), w]
        win = rearrange(h.unfold(2, k, 1), "b c j w k -> (b j) (c k) w")  # j = N + k - 1 windows
        nw = n + k - 1
        dev = x.device
        var = torch.arange(c, device=dev).repeat_interleave(k).expand(b * nw, -1)
        time = torch.arange(k, device=dev).repeat(c).expand(b * nw, -1)
        seg = channel_mask.long().repeat_interleave(k, dim=1).repeat_interleave(nw, dim=0)
        ids = {"var": var, "time": time, "seg": seg, "backend": backend}
        out = encode_packed(self.encoder, win, ids) if self.pack else self.encoder(win, ids)
        out = rearrange(out, "(b j) (c k) w -> b c j k w", b=b, k=k)
        # position t is covered by window j = t + k - 1 - o at in-window offset o, for o = 0..k-1
        folded = sum(out[:, :, k - 1 - o : k - 1 - o + n, o] for o in range(k)) / k
        return self.up(folded)  # [B, C, N, d]


# --------------------------------------------------------------------------------------------
# the backbone


class MuReadout(nn.Linear):
    """A linear read-out whose input is multiplied by ``output_mult / width_mult`` (muP)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width_mult: float = 1.0,
        output_mult: float = 1.0,
        zero_init: bool = True,
    ) -> None:
        super().__init__(d_in, d_out)
        self.mult = output_mult / width_mult
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.mult)


class Moirai(nn.Module):
    """The DIVER-1 / MOIRAI backbone over :class:`efm.interfaces.Tokens`.

    ``forward(tokens, mask)`` zeroes the masked patches (``mask [B, C, N]``, True = visible) before the
    embedder, prepends the register tokens, runs the encoder and returns the ``C x N`` real token
    features ``[B, C*N, d]`` (registers dropped; padded channels zero). ``extra`` holds ``grid``
    ``(C, N)``, ``channel_mask`` and the register outputs.

    muP interface for the training engine: :meth:`lr_multipliers` (name -> Adam LR multiplier;
    hidden matrices get ``base_fan_in / fan_in``, everything else 1) and :meth:`param_roles`
    (name -> ``"hidden"`` | ``"vector"``); heads should be built with :meth:`readout`. Initialisation
    follows muP's rule for Adam: input and hidden weights keep torch's ``1/fan_in``-variance
    defaults, read-outs start at zero and scale their input by ``1 / width_mult``, attention uses
    ``1 / head_dim``. ``width_mult = d_model / mup_base_width`` (1 at DIVER-1's base width 256).
    """

    accepts = ("token",)

    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        if cfg.patch_len is None or cfg.embed_window is None:  # built alone: the plain defaults
            cfg = replace(
                cfg,
                patch_len=50 if cfg.patch_len is None else cfg.patch_len,
                embed_window=0 if cfg.embed_window is None else cfg.embed_window,
            )
        d = cfg.d_model
        if d % cfg.head_dim or d % 4:
            raise MoiraiError(f"d_model {d} must be a multiple of head_dim {cfg.head_dim} and of 4")
        if cfg.attention not in ("sdpa", "flex", "auto"):
            raise MoiraiError(f"attention must be sdpa, flex or auto, got {cfg.attention!r}")
        self.cfg = cfg
        self.embed_dim = d
        self.width_mult = d / cfg.mup_base_width if cfg.mup else 1.0
        self.patch_embed = CNNPatchEmbed(d, cfg.patch_len)
        self.spectral_proj = nn.Linear(d // 2 + 1, d)
        self.spectral_drop = nn.Dropout(cfg.dropout)
        self.modality_embed = nn.Embedding(2, d // 4)
        self.subtype_embed = nn.Embedding(3, d // 4)  # grid, strip, depth (0 = unknown -> zeros)
        self.stcpe = STCPE(d, cfg) if cfg.stcpe_window > 0 else None
        if cfg.registers:  # time column per channel, channel row per patch, global corner
            self.n_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
            self.c_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
            self.nc_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.encoder = Encoder(d, cfg.n_layers, cfg, cfg.dropout)

    # -- interface ----------------------------------------------------------------------------
    @property
    def input_scale(self) -> float:
        """Factor from the representation's µV to the model's units (targets use it too)."""
        return self.cfg.input_scale

    def backend(self, device: torch.device) -> str:
        a = self.cfg.attention
        return ("flex" if device.type == "cuda" else "sdpa") if a == "auto" else a

    def mask_shape(self, x: Tokens) -> tuple[int, int]:
        return (int(x.patches.shape[1]), int(x.patches.shape[2]))

    def example_input(self, batch_size: int, n_chans: int = 4, n_patches: int = 6) -> Tokens:
        g = torch.Generator().manual_seed(0)
        b, c = batch_size, n_chans
        return Tokens(
            patches=torch.randn(b, c, n_patches, self.cfg.patch_len, generator=g) * 30.0,
            channel_mask=torch.ones(b, c, dtype=torch.bool),
            ch_type=torch.zeros(b, c, dtype=torch.long),
            ch_pos=torch.randn(b, c, 3, generator=g) * 0.05,
            modality=torch.zeros(b, dtype=torch.long),
            subtype=torch.zeros(b, c, dtype=torch.long),
            sfreq=500.0,
        )

    def embed(self, x: Tokens) -> torch.Tensor:
        """Mean of the real token features over valid channels and patches: ``[B, d]``.

        With ``embed_window`` set and a longer input, the mean over consecutive windows of that many
        patches (a trailing partial window is dropped), each encoded on its own.
        """
        w, n = self.cfg.embed_window, x.patches.shape[2]
        if w and n > w:
            k = n // w

            def rep(t: torch.Tensor) -> torch.Tensor:
                return t.repeat_interleave(k, dim=0)

            patches = rearrange(x.patches[:, :, : k * w], "b c (k n) p -> (b k) c n p", k=k)
            windows = Tokens(patches, rep(x.channel_mask), rep(x.ch_type), rep(x.ch_pos),
                             rep(x.modality), rep(x.subtype), x.sfreq)  # fmt: skip
            return rearrange(self.embed(windows), "(b k) d -> b k d", k=k).mean(1)
        out = self(x)
        c, n = out.extra["grid"]
        w = out.extra["channel_mask"].to(out.features.dtype).repeat_interleave(n, dim=1)[..., None]
        return (out.features * w).sum(1) / w.sum(1).clamp_min(1.0)

    def readout(self, d_out: int) -> MuReadout | nn.Linear:
        """A head from the ``d``-dim features: a zero-initialised :class:`MuReadout` under muP."""
        if self.cfg.mup:
            return MuReadout(self.embed_dim, d_out, self.width_mult)
        return nn.Linear(self.embed_dim, d_out)

    # -- forward ------------------------------------------------------------------------------
    def embed_tokens(self, x: Tokens, mask: torch.Tensor | None = None) -> torch.Tensor:
        """DIVER-1's embedder: ``[B, C, N, P]`` patches to ``[B, C, N, d]`` tokens."""
        p = x.patches
        if p.ndim != 4 or p.shape[-1] != self.cfg.patch_len:
            raise MoiraiError(
                f"expected patches [B, C, N, {self.cfg.patch_len}], got {tuple(p.shape)}; "
                f"set the backbone's patch_len to the representation's patch size"
            )
        cm = x.channel_mask.to(p.device, torch.bool)
        p = p * self.cfg.input_scale
        if mask is not None:
            p = p * mask.to(p.device, p.dtype)[..., None]  # masked patches -> zeros
        h = self.patch_embed(p, cm)  # [B, C, N, d]
        spec = torch.fft.rfft(h.float(), dim=-1, norm="forward").abs().to(h.dtype)
        h = h + self.spectral_drop(self.spectral_proj(spec))
        pos = coord_encoding(x.ch_pos.to(p.device) * 1000.0, self.embed_dim - self.embed_dim // 4)
        sub = x.subtype.to(p.device).long()
        kind = (
            self.modality_embed(x.modality.to(p.device).long())[:, None]
            + self.subtype_embed((sub - 1).clamp_min(0)) * (sub > 0)[..., None]
        )  # [B, C, d/4]
        h = h + torch.cat((pos.to(h.dtype), kind), dim=-1)[:, :, None]
        if self.stcpe is not None:
            h = h + self.stcpe(h, cm, self.backend(p.device))
        return h * cm[:, :, None, None]

    def forward(
        self, x: Tokens, mask: torch.Tensor | None = None, taps: list[torch.Tensor] | None = None
    ) -> BackboneOutput:
        h = self.embed_tokens(x, mask)
        b, c, n, d = h.shape
        cm = x.channel_mask.to(h.device, torch.bool)
        r = 1 if self.cfg.registers else 0
        if r:
            top = torch.cat((self.nc_token.expand(b, 1, 1, d), self.c_token.expand(b, 1, n, d)), 2)
            h = torch.cat((top, torch.cat((self.n_token.expand(b, c, 1, d), h), 2)), 1)
            cm = torch.cat((cm.new_ones(b, 1), cm), 1)
        rows, cols = c + r, n + r
        dev = h.device
        ids = {
            "var": torch.arange(rows, device=dev).repeat_interleave(cols).expand(b, -1),
            "time": torch.arange(cols, device=dev).repeat(rows).expand(b, -1),
            "seg": cm.long().repeat_interleave(cols, dim=1),
            "backend": self.backend(dev),
        }
        seq = rearrange(h, "b c n d -> b (c n) d")
        out = self._encode_packed(seq, ids, taps) if self.cfg.pack else self.encoder(seq, ids, taps)
        grid = rearrange(out, "b (c n) d -> b c n d", c=rows)
        feats = grid[:, r:, r:] * x.channel_mask.to(dev, grid.dtype)[:, :, None, None]
        extra = {"grid": (c, n), "channel_mask": x.channel_mask.to(dev, torch.bool)}
        if r:
            extra["registers"] = {"n": grid[:, 1:, 0], "c": grid[:, 0, 1:], "nc": grid[:, 0, 0]}
        return BackboneOutput(rearrange(feats, "b c n d -> b (c n) d"), extra=extra)

    def _encode_packed(
        self, seq: torch.Tensor, ids: dict[str, Any], taps: list[torch.Tensor] | None
    ) -> torch.Tensor:
        return encode_packed(self.encoder, seq, ids, self.cfg.pack_len, taps)

    # -- optimizer roles (efm.interfaces.SupportsParamGroups) ---------------------------------------
    def param_groups(self) -> dict[str, str]:
        """Muon for the encoder's and STCPE's linear weights; AdamW for the input layers (the CNN
        patch embedder and the spectral projection, architectures.md 4.2) and everything else."""
        inputs = ("patch_embed.", "spectral_proj.")
        linear = {f"{n}.weight" for n, m in self.named_modules() if isinstance(m, nn.Linear)}
        return {
            n: "muon" if n in linear and not n.startswith(inputs) else "adamw"
            for n, _ in self.named_parameters()
        }

    # -- muP ----------------------------------------------------------------------------------
    def param_roles(self) -> dict[str, str]:
        """``"hidden"`` for matrices with two width-scaling dims (muP's matrix-like), else ``"vector"``."""
        roles = {}
        shapes = _width_scaling_dims(self.cfg)
        for name, _ in self.named_parameters():
            roles[name] = "hidden" if shapes.get(name, 0) >= 2 else "vector"
        return roles

    def lr_multipliers(self) -> dict[str, float]:
        """Adam LR multiplier per parameter name: ``base_fan_in / fan_in`` for hidden matrices under
        muP (``1/width_mult``), 1 for the rest and for everything without muP. For AdamW, multiply the
        group's weight decay by the inverse so ``lr * wd`` stays constant (``mup.MuAdamW``); with Muon
        for hidden matrices use no multiplier there (its update is already width-stable)."""
        if not self.cfg.mup:
            return {name: 1.0 for name, _ in self.named_parameters()}
        base = _meta_model(replace(self.cfg, d_model=self.cfg.mup_base_width))
        base_shapes = {k: v.shape for k, v in base.named_parameters()}
        roles = self.param_roles()
        out = {}
        for name, p in self.named_parameters():
            hidden = roles[name] == "hidden" and p.ndim >= 2
            out[name] = base_shapes[name][1] / p.shape[1] if hidden else 1.0
        return out


def _meta_model(cfg: MoiraiConfig) -> Moirai:
    with torch.device("meta"):
        return Moirai(cfg)


def _width_scaling_dims(cfg: MoiraiConfig) -> dict[str, int]:
    """Per parameter, how many of its dims change between widths ``base`` and ``2 * base``."""
    a = dict(_meta_model(replace(cfg, d_model=cfg.mup_base_width)).named_parameters())
    b = dict(_meta_model(replace(cfg, d_model=2 * cfg.mup_base_width)).named_parameters())
    return {k: sum(int(x != y) for x, y in zip(a[k].shape, b[k].shape)) for k in a}


def encode_packed(
    encoder: Encoder,
    seq: torch.Tensor,
    ids: dict[str, Any],
    pack_len: int = 0,
    taps: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pack the valid tokens (``ids["seg"] > 0``) of every row of ``seq [B, L, d]`` into shared rows
    (first-fit decreasing, at least ``pack_len`` long), encode them, and put them back (zeros at
    padding)."""
    b, length, d = seq.shape
    valid = ids["seg"] > 0  # [B, L]
    lengths = valid.sum(1).tolist()
    cap = max(pack_len, max(lengths), 1)
    row_of, start_of = pack_rows(lengths, cap)
    n_rows = max(row_of) + 1
    base = torch.tensor([ro * cap + s for ro, s in zip(row_of, start_of)], device=seq.device)
    dest = (base[:, None] + valid.long().cumsum(1) - 1)[valid]  # [n_valid]
    sample = torch.arange(1, b + 1, device=seq.device)[:, None].expand(b, length)
    packed = seq.new_zeros(n_rows * cap, d).index_copy(0, dest, seq[valid])
    pids = {
        k: torch.zeros(n_rows * cap, dtype=torch.long, device=seq.device)
        .index_copy(0, dest, v[valid])
        .view(n_rows, cap)
        for k, v in (("var", ids["var"]), ("time", ids["time"]), ("seg", sample))
    }
    pids["backend"] = ids["backend"]
    row_taps: list[torch.Tensor] | None = [] if taps is not None else None
    out = encoder(packed.view(n_rows, cap, d), pids, row_taps).reshape(n_rows * cap, d)
    if taps is not None and row_taps is not None:
        taps.extend(t.reshape(n_rows * cap, d)[dest] for t in row_taps)
    return seq.new_zeros(b, length, d).masked_scatter(valid[..., None], out[dest])


def pack_rows(lengths: list[int], cap: int) -> tuple[list[int], list[int]]:
    """First-fit-decreasing bin packing: the row and start offset of each sample."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    fill: list[int] = []
    row_of, start_of = [0] * len(lengths), [0] * len(lengths)
    for i in order:
        row = next((r for r, f in enumerate(fill) if f + lengths[i] <= cap), None)
        if row is None:
            fill.append(0)
            row = len(fill) - 1
        row_of[i], start_of[i] = row, fill[row]
        fill[row] += lengths[i]
    return row_of, start_of


# --------------------------------------------------------------------------------------------
# DIVER-1 checkpoints

_DIVER_RULES = [
    (r"^embedding\.0\.proj_in\.", "patch_embed.proj_in."),
    (r"^embedding\.1\.embedding\.spectral_proj\.0\.", "spectral_proj."),
    (r"^embedding\.2\.embedding\.embedding2\.models\.0\.embedding\.", "modality_embed."),
    (r"^embedding\.2\.embedding\.embedding2\.models\.1\.embedding\.", "subtype_embed."),
    (r"^embedding\.3\.embedding\.0\.module\.", "stcpe.down."),
    (r"^embedding\.3\.embedding\.2\.module\.", "stcpe.up."),
    (r"^embedding\.3\.embedding\.1\.model\.encoder\.", "stcpe.encoder."),
    (r"^encoder\.encoder\.", "encoder."),
    (
        r"^token_manager\.special_tokens\.(N|C|NC)_token\.param$",
        lambda m: f"{m.group(1).lower()}_token",
    ),
]
_LAYER_RULES = [
    (r"\.self_attn\.var_attn_bias\.emb\.", ".attn.var_bias."),
    (r"\.self_attn\.", ".attn."),
]
HEAD_NAMES = {
    "time_head": "time",
    "fft_amplitude_head": "fft",
    "multiscale_stft_amplitude_head": "stft",
}


def diver_key(name: str) -> str | None:
    """The efm name of a DIVER-1 state-dict key (``None`` for keys the backbone does not hold)."""
    name = re.sub(r"^(module\.)+", "", name)
    for pat, rep in _DIVER_RULES:
        new, hits = re.subn(pat, rep, name)
        if hits:
            for lp, lr in _LAYER_RULES:
                new = re.sub(lp, lr, new)
            return new
    return None


def split_diver_state_dict(
    sd: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Backbone and head tensors (efm names, float32) of a DIVER-1 state dict.

    Heads come back as ``{"time.weight": ..., "fft.bias": ...}``; ``mask_encoding`` is dropped.
    """
    backbone, heads = {}, {}
    for key, value in sd.items():
        m = re.match(r"^(?:module\.)*heads\.org\.heads\.(\w+)\.module\.(weight|bias)$", key)
        if m and m.group(1) in HEAD_NAMES:
            heads[f"{HEAD_NAMES[m.group(1)]}.{m.group(2)}"] = value.float()
        elif (new := diver_key(key)) is not None:
            backbone[new] = value.float()
    return backbone, heads


def load_diver_checkpoint(
    model: Moirai, source: str | Path | dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Load a released DIVER-1 checkpoint (DeepSpeed ``{"module": state_dict}`` or a plain state dict)
    into ``model``; returns the reconstruction-head tensors for the objective.

    Raises :class:`MoiraiError` naming the missing and unexpected keys when the sizes do not match.
    """
    if isinstance(source, (str, Path)):
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # unreadable or not a tensor-only pickle
            raise MoiraiError(f"cannot read DIVER-1 checkpoint {source}: {err}") from err
    sd = source.get("module", source.get("model_state_dict", source))
    backbone, heads = split_diver_state_dict(sd)
    own = model.state_dict()
    missing = sorted(set(own) - set(backbone))
    unexpected = sorted(set(backbone) - set(own))
    bad = [k for k in set(own) & set(backbone) if own[k].shape != backbone[k].shape]
    if missing or unexpected or bad:
        raise MoiraiError(
            f"DIVER-1 checkpoint does not fit {model.cfg.d_model}-wide moirai: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {sorted(bad)[:5]}"
        )
    model.load_state_dict(backbone)
    log.info(
        "loaded DIVER-1 checkpoint: %d backbone tensors, heads %s", len(backbone), sorted(heads)
    )
    return heads


def build(**cfg: Any) -> Moirai:
    """Registry builder."""
    model = Moirai(MoiraiConfig(**cfg))
    if model.cfg.diver_checkpoint:
        load_diver_checkpoint(model, model.cfg.diver_checkpoint)
    return model


def config_dict(model: Moirai) -> dict[str, Any]:
    return asdict(model.cfg)
