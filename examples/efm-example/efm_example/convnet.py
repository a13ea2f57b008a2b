"""A small patchify-then-convolve image backbone, following efm's Backbone interface."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from efm.interfaces import BackboneOutput


class ConvNet(nn.Module):
    """Patch stem, ``depth`` depth-wise conv blocks, tokens out.

    Parameters
    ----------
    in_chans : int
        Image channels (EPI-250k: 8 regions).
    input_size : tuple of int
        (H, W).
    width : int
        Feature width, also ``embed_dim``.
    depth : int
        Number of blocks.
    patch : int
        Stem stride; the mask grid is ``(H / patch, W / patch)``.
    """

    accepts = ("image",)

    def __init__(
        self,
        in_chans: int = 8,
        input_size=(224, 224),
        width: int = 64,
        depth: int = 2,
        patch: int = 16,
    ) -> None:
        super().__init__()
        self.in_chans, self.input_size, self.patch = in_chans, tuple(input_size), patch
        self.embed_dim = width
        self.stem = nn.Conv2d(in_chans, width, patch, stride=patch)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 7, padding=3, groups=width),
                nn.GroupNorm(1, width),
                nn.Conv2d(width, 4 * width, 1),
                nn.GELU(),
                nn.Conv2d(4 * width, width, 1),
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[-2] // self.patch, x.shape[-1] // self.patch)

    def example_input(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.in_chans, *self.input_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, n_visible: int | None = None
    ) -> BackboneOutput:
        """Tokens ``[B, L, D]``; with a ``mask`` ``[B, h, w]`` (True = visible, the same count per
        sample) hidden patches are zeroed after the stem (SimMIM style) and only the visible ones
        are returned, as MAE expects: features ``[B, kept, D]`` and per-block intermediates
        ``[B, kept, 1, 1, D]`` (one patch per mask unit), in raster order. ``n_visible`` is that
        count when the mask's values cannot be read (``efm validate`` builds on the meta device)."""
        h = self.stem(x)  # [B, D, h, w]
        if mask is not None:
            h = h * mask[:, None].to(h.dtype)
        inter = []
        for block in self.blocks:
            h = h + block(h)
            inter.append(rearrange(h, "b d h w -> b (h w) d"))
        tokens = self.norm(rearrange(h, "b d h w -> b (h w) d"))  # [B, L, D]
        if mask is not None:
            keep = mask.flatten(1)  # [B, L]
            k = n_visible if n_visible is not None else int(keep[0].sum())
            # the visible units first, in raster order (a stable sort of the 1/0 mask)
            idx = keep.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :k]
            d = tokens.shape[-1]
            tokens = tokens.gather(1, idx[..., None].expand(-1, -1, d))  # [B, k, D]
            inter = [t.gather(1, idx[..., None].expand(-1, -1, d)).view(*idx.shape, 1, 1, d)
                     for t in inter]  # fmt: skip
        return BackboneOutput(tokens, inter, {"grid": tuple(h.shape[-2:])})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).features.mean(dim=1)  # [B, D]
