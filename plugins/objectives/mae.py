"""Hiera-MAE: masked autoencoding over mask units, with multi-scale fusion and a transformer decoder.

Papers: C. Ryali et al., "Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles",
ICML 2023, https://arxiv.org/abs/2306.00989; K. He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, https://arxiv.org/abs/2111.06377.
Upstream: https://github.com/facebookresearch/hiera (``hiera/hiera_mae.py``). Parameter names follow
it, so reference MAE checkpoints load with :func:`load_reference_mae`.

Written against :class:`efm.interfaces.Backbone`, not against Hiera: any image backbone works whose
``mask_shape(x)`` is a grid of mask units, whose ``forward(x, mask)`` drops the hidden units (``mask``
``[B, *grid]``, True = visible, the same count per sample) and whose ``intermediates`` are per-stage
features ``[B, kept, *unit_s, C_s]``, kept units in ascending raster order, units of the last stage
tiling the final token grid. The decoder's shapes are read from one probe forward at construction.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import torch
from einops import rearrange
from torch import nn

from efm.errors import ConfigError
from efm.interfaces import ObjectiveOutput, represent
from efm_plugins.backbones.hiera import HieraBlock, undo_windowing

log = logging.getLogger("efm.plugins.mae")
_OWN = ("encoder_norm.", "multi_scale_fusion_heads.", "decoder_", "mask_token")


class MAE(nn.Module):
    """Masked autoencoder objective over an image backbone and a representation.

    Parameters
    ----------
    backbone : nn.Module
        An image :class:`efm.interfaces.Backbone` (see the module docstring for the mask contract).
    representation : nn.Module
        Turns ``batch["signal"]`` ``[B, C, T]`` into the backbone's input.
    **options
        See :class:`efm_plugins.objectives.mae_config.MAEConfig`.
    """

    def __init__(
        self,
        backbone: Any,
        representation: Any,
        mask_ratio: float | None = None,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        init_backbone: bool = True,
    ) -> None:
        super().__init__()
        if "image" not in tuple(getattr(backbone, "accepts", ())):
            raise ConfigError(
                [
                    f"mae needs an image backbone; {type(backbone).__name__} accepts "
                    f"{getattr(backbone, 'accepts', ())}"
                ]
            )
        self.backbone, self.representation = backbone, representation
        self.norm_pix_loss = norm_pix_loss
        x, out = self._probe()
        self._unused = self._unread(out)
        self.grid = tuple(int(g) for g in backbone.mask_shape(x))
        self.dims = len(self.grid)
        if self.dims not in (2, 3):
            raise ConfigError([f"mae supports 2D and 3D mask grids, got {self.grid}"])
        ratio = (0.6 if self.dims == 2 else 0.9) if mask_ratio is None else float(mask_ratio)
        self.n_units = math.prod(self.grid)
        self.n_keep = int(self.n_units * (1 - ratio))
        if not 0 < self.n_keep < self.n_units:
            raise ConfigError(
                [
                    f"mae: mask_ratio={ratio} keeps {self.n_keep} of {self.n_units} "
                    f"mask units; it must keep at least one and hide at least one"
                ]
            )
        self.mask_ratio = 1.0 - self.n_keep / self.n_units  # the effective ratio
        self.in_chans, self.input_size = int(x.shape[1]), tuple(int(s) for s in x.shape[2:])

        units = [tuple(int(s) for s in t.shape[2:-1]) for t in out.intermediates]
        widths = [int(t.shape[-1]) for t in out.intermediates]
        if not units or any(len(u) != self.dims for u in units):
            raise ConfigError(
                [
                    "mae: the backbone must return per-stage intermediates "
                    "[B, kept, *unit, C] when given a mask"
                ]
            )
        self.unit = units[-1]
        self.token_grid = tuple(g * u for g, u in zip(self.grid, self.unit))
        self.pred_stride = tuple(i // t for i, t in zip(self.input_size, self.token_grid))
        if any(i % t for i, t in zip(self.input_size, self.token_grid)):
            raise ConfigError(
                [f"mae: input {self.input_size} is not a whole number of tokens {self.token_grid}"]
            )
        # multi-scale fusion: the last stage at every resolution, mapped to the last stage's width
        self.fused = [
            i for i in range(len(units)) if i == len(units) - 1 or units[i] != units[i + 1]
        ]
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[self.dims]
        heads: list[nn.Module] = []
        for i in self.fused[:-1]:
            kernel = tuple(a // b for a, b in zip(units[i], self.unit))
            heads.append(conv(widths[i], widths[-1], kernel_size=kernel, stride=kernel))
        self.multi_scale_fusion_heads = nn.ModuleList([*heads, nn.Identity()])
        self.encoder_norm = nn.LayerNorm(widths[-1], eps=1e-6)

        d = decoder_embed_dim
        self.decoder_embed = nn.Linear(widths[-1], d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.token_grid), d))
        self.decoder_blocks = nn.ModuleList(
            [HieraBlock(d, d, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        n_pix = math.prod(self.pred_stride[-2:]) * self.in_chans  # one frame per token in 3D
        self.decoder_pred = nn.Linear(d, n_pix)
        self._init_weights(init_backbone)

    # -- construction -----------------------------------------------------------------------------
    def _probe(self) -> tuple[torch.Tensor, Any]:
        """One forward of the backbone with a single visible unit, to read its layout."""
        bb = self.backbone
        with torch.random.fork_rng(devices=[]):
            x = self._as_input(bb.example_input(1))
        grid = tuple(bb.mask_shape(x))
        mask = torch.zeros(1, math.prod(grid), dtype=torch.bool, device=x.device)
        mask[0, 0] = True
        was_training = bb.training
        bb.eval()
        try:
            # on the meta device (efm validate) the mask's values cannot be read: say how many
            # (only a backbone whose forward takes n_visible can be built there; others are
            # checked when built for real)
            takes = "n_visible" in inspect.signature(bb.forward).parameters
            extra = {"n_visible": 1} if x.device.type == "meta" and takes else {}
            out = bb(x, mask=mask.view(1, *grid), **extra)  # with autograd: see _unread
        finally:
            bb.train(was_training)
        return x, out

    def _unread(self, out: Any) -> set[str]:
        """Backbone parameters that the intermediates (all the MAE reads) do not depend on, e.g.
        its final ``norm``: declared by :meth:`unused_parameters` so that DDP can run."""
        params = [(n, p) for n, p in self.backbone.named_parameters() if p.requires_grad]
        outputs = [t for t in out.intermediates if t.requires_grad]
        if not params or not outputs or outputs[0].device.type == "meta":
            return set()
        grads = torch.autograd.grad(
            outputs,
            [p for _, p in params],
            grad_outputs=[torch.ones_like(t) for t in outputs],
            allow_unused=True,
        )
        return {f"backbone.{n}" for (n, _), g in zip(params, grads) if g is None}

    def unused_parameters(self) -> set[str]:
        """Parameters a training step never uses: the backbone's outputs the MAE does not read
        (:class:`efm.interfaces.SupportsUnusedParameters`)."""
        return set(self._unused)

    def _init_weights(self, init_backbone: bool) -> None:
        """Hiera-MAE's init: xavier-uniform linears (zero bias), unit LayerNorms, xavier stem."""
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        parts: list[nn.Module] = [
            m for n, m in self.named_children() if n not in ("backbone", "representation")
        ]
        if init_backbone:
            parts.append(self.backbone)
            for m in self.backbone.modules():  # the stem, initialised like a linear layer
                if isinstance(m, nn.Conv2d | nn.Conv3d):
                    nn.init.xavier_uniform_(m.weight.data.view(m.weight.shape[0], -1))
        for part in parts:
            for m in part.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    # -- pieces -----------------------------------------------------------------------------------
    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        """Add the channel axis to ``[B, T, H, W]`` images for single-channel 3D backbones."""
        n_in = getattr(self.backbone, "in_chans", None)
        size = getattr(self.backbone, "input_size", None)
        if n_in == 1 and size is not None and x.ndim == len(size) + 1:
            return x.unsqueeze(1)
        return x

    def param_groups(self) -> dict[str, str]:
        """The objective's own parameters (the backbone declares its own): Muon for the decoder's
        linear weights (input projection and blocks); AdamW for the fusion convolutions, norms,
        tokens, position embeddings and the pixel read-out ``decoder_pred``."""
        linear = {f"{n}.weight" for n, m in self.named_modules() if isinstance(m, nn.Linear)}
        muon = ("decoder_embed.", "decoder_blocks.")
        return {
            n: "muon" if n in linear and n.startswith(muon) else "adamw"
            for n, _ in self.named_parameters()
            if not n.startswith(("backbone.", "representation."))
        }

    def random_mask(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """A random bool mask ``[B, *grid]`` keeping ``n_keep`` units per sample (True = visible)."""
        noise = torch.rand(batch_size, self.n_units, device=device)
        ids = noise.argsort(dim=1)[:, : self.n_keep]
        mask = torch.zeros(batch_size, self.n_units, dtype=torch.bool, device=device)
        return mask.scatter_(1, ids, True).view(batch_size, *self.grid)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, *size]`` -> per-token pixel targets ``[B, L, P]`` (upstream's order)."""
        p = self.pred_stride
        if self.dims == 2:
            return rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=p[0], q=p[1])
        # 3D: the first frame of every token; pixels channel-last, as upstream trained it
        return rearrange(x[:, :, :: p[0]], "b c t (h p) (w q) -> b (t h w) (p q c)", p=p[1], q=p[2])

    def unpatchify(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify` (3D: the target frames only)."""
        g, p = self.token_grid, self.pred_stride
        if self.dims == 2:
            return rearrange(t, "b (h w) (c p q) -> b c (h p) (w q)", h=g[0], p=p[0], q=p[1])
        return rearrange(
            t, "b (t h w) (p q c) -> b c t (h p) (w q)", h=g[1], w=g[2], p=p[1], q=p[2]
        )

    def _fuse(self, inter: list[torch.Tensor]) -> torch.Tensor:
        """Sum of the fused stages at the last stage's resolution: ``[B, kept, *unit, C]``."""
        fused: torch.Tensor | None = None
        for i, head in zip(self.fused, self.multi_scale_fusion_heads):
            x = inter[i]
            if not isinstance(head, nn.Identity):
                b, k = x.shape[:2]
                x = head(x.flatten(0, 1).movedim(-1, 1)).movedim(1, -1).unflatten(0, (b, k))
            fused = x if fused is None else fused + x
        assert fused is not None
        return self.encoder_norm(fused)

    def _decode(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Visible latents ``[B, kept, *unit, C]`` + mask tokens -> predictions ``[B, L, P]``."""
        x = self.decoder_embed(latent).flatten(2, -2)  # [B, kept, R, D]
        b, k, r, d = x.shape
        ids = torch.argsort((~mask.reshape(b, -1)).to(torch.int8), dim=1, stable=True)[:, :k]
        full = self.mask_token.to(x.dtype).expand(b, self.n_units, r, d)
        full = full.scatter(1, ids[:, :, None, None].expand(-1, -1, r, d), x)  # [B, units, R, D]
        x = undo_windowing(full.view(b, self.n_units, *self.unit, d), self.grid, self.unit)
        x = x.flatten(1, -2) + self.decoder_pos_embed  # [B, L, D] in raster order
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def token_visibility(self, mask: torch.Tensor) -> torch.Tensor:
        """Unit mask ``[B, *grid]`` -> token mask ``[B, L]`` on the final token grid."""
        b = mask.shape[0]
        m = mask.reshape(b, self.n_units, *([1] * self.dims), 1).expand(-1, -1, *self.unit, 1)
        return undo_windowing(m, self.grid, self.unit).reshape(b, -1)

    def targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token targets ``[B, L, P]`` in fp32, with their means and standard deviations."""
        t = self.patchify(x.float())
        if not self.norm_pix_loss:
            return t, torch.zeros_like(t[..., :1]), torch.ones_like(t[..., :1])
        mean, std = t.mean(dim=-1, keepdim=True), (t.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        return (t - mean) / std, mean, std

    # -- forward ----------------------------------------------------------------------------------
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss and per-token predictions for images ``x`` under unit mask ``mask`` (True = visible).

        Returns ``loss`` (mean squared error over every element of every hidden token), ``pred`` and
        ``target`` ``[B, L, P]``, ``visible`` ``[B, L]`` and the targets' ``mean`` / ``std``.
        """
        x = self._as_input(x)
        out = self.backbone(x, mask=mask)
        pred = self._decode(self._fuse(out.intermediates), mask)
        target, mean, std = self.targets(x)
        visible = self.token_visibility(mask)
        hidden = (~visible).to(torch.float32)
        err = (pred.float() - target).pow(2).mean(dim=-1)  # [B, L]
        loss = (err * hidden).sum() / hidden.sum()
        return {
            "loss": loss,
            "pred": pred,
            "target": target,
            "visible": visible,
            "mean": mean,
            "std": std,
        }

    def forward_image(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> ObjectiveOutput:
        """The objective on representation outputs; a random mask unless ``mask`` is given."""
        x = self._as_input(x)
        if mask is None:
            mask = self.random_mask(x.shape[0], x.device)
        r = self.reconstruct(x, mask)
        return ObjectiveOutput(r["loss"], {"mask_ratio": self.mask_ratio}, self._figures(r))

    def forward(self, batch: dict[str, Any]) -> ObjectiveOutput:
        """``batch["signal"]`` ``[B, C, T]`` (µV) -> representation -> masked reconstruction loss."""
        return self.forward_image(represent(self.representation, batch))

    @torch.no_grad()
    def _figures(self, r: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sample 0 as images ``[C, H, W]`` (3D: ``[C, T, H, W]``): original, visible part only,
        and the reconstruction (hidden tokens predicted, visible ones pasted from the original);
        ``hidden`` is the mask (bool, same shape), which figures draw over the masked panel."""
        vis = r["visible"][:1, :, None]
        mean, std = r["mean"][:1], r["std"][:1]
        original = r["target"][:1] * std + mean
        pred = r["pred"][:1].float() * std + mean
        images = {
            "original": original,
            "masked": original * vis,
            "reconstruction": torch.where(vis, original, pred),
            "hidden": (~vis).to(original.dtype).expand_as(original),  # the mask, not a panel
        }
        out = {k: self.unpatchify(v)[0].detach() for k, v in images.items()}
        out["hidden"] = out["hidden"] > 0.5
        return out


def build(backbone: Any, representation: Any, **cfg: Any) -> MAE:
    """The registered builder: ``build(backbone=..., representation=..., **MAEConfig)``."""
    return MAE(backbone, representation, **cfg)


def load_reference_mae(
    mae: MAE, state_dict: dict[str, Any], strict: bool = True, *, q_pool: int = 2
) -> Any:
    """Load an upstream ``MaskedAutoencoderHiera`` checkpoint (its ``model_state``) into ``mae``.

    Encoder weights go to ``mae.backbone``; fusion heads, decoder and mask token to ``mae``. The
    backbone's final ``norm`` (absent from MAE checkpoints) keeps its values. Upstream builds its
    MAE models with ``q_pool=2`` (``q_pool``: what the weights were made for); a backbone with
    another ``q_pool`` is refused (no parameter depends on it, so the weights would load silently).
    """
    own = getattr(mae.backbone, "q_pool", q_pool)
    if own != q_pool:
        raise ConfigError(
            [
                f"mae: these reference MAE weights were made for q_pool={q_pool}, the backbone "
                f"has q_pool={own}; build it with backbone.q_pool={q_pool}"
            ]
        )
    sd = state_dict.get("model_state", state_dict)
    mapped = {(k if k.startswith(_OWN) else f"backbone.{k}"): v for k, v in sd.items()}
    result = mae.load_state_dict(mapped, strict=False)
    skip = ("backbone.norm.", "backbone.head.", "representation.")
    missing = [k for k in result.missing_keys if not k.startswith(skip)]
    if strict and (missing or result.unexpected_keys):
        raise ConfigError(
            [
                f"mae: reference checkpoint does not match: missing {missing}, "
                f"unexpected {result.unexpected_keys}"
            ]
        )
    return result
