"""Hiera: one dimension-agnostic hierarchical vision transformer for 2D and 3D image inputs.

Paper: C. Ryali, Y.-T. Hu, D. Bolya et al., "Hiera: A Hierarchical Vision Transformer without the
Bells-and-Whistles", ICML 2023, https://arxiv.org/abs/2306.00989.
Upstream: https://github.com/facebookresearch/hiera (``hiera/hiera.py``, ``hiera/hiera_utils.py``).

Parameter names and shapes follow the upstream model, so its published checkpoints load (see
:meth:`Hiera.load_reference_state_dict`). Differences from upstream, none of which changes the numbers:
attention calls ``F.scaled_dot_product_attention`` on 4-D tensors (``[B, heads * windows, tokens,
head_dim]``) so the fused GPU kernels are eligible; unroll / reroll are precomputed token gathers; the
classification head returns logits (no softmax in eval mode).

Token layout. After the patch embedding the tokens are *unrolled*: the flat index is ordered as
``(d1, d2, d3, mask unit)``, the offsets inside the three ``q_stride`` pooling windows first and the
mask-unit index last, so a q-pool is a max over the leading ``q_stride`` slice and a mask unit is a
fixed set of positions. With a mask, only the kept mask units' tokens enter the blocks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from efm.errors import ConfigError
from efm.interfaces import BackboneOutput
from efm_plugins.backbones.hiera_config import DEFAULTS as _DEFAULTS
from efm_plugins.backbones.hiera_config import HIERA_SIZES
from efm_plugins.backbones.hiera_config import validate as _validate

log = logging.getLogger("efm.plugins.hiera")

_MAE_ONLY = ("encoder_norm.", "multi_scale_fusion_heads.", "decoder_", "mask_token")


def pool_tokens(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max-pool unrolled tokens ``[B, N, C]`` over their leading ``stride`` slice."""
    if stride == 1:
        return x
    return rearrange(x, "b (s n) c -> b s n c", s=stride).amax(dim=1)


def undo_windowing(x: torch.Tensor, grid: Sequence[int], unit: Sequence[int]) -> torch.Tensor:
    """``[B, #units, *unit, C]`` (units in raster order) -> ``[B, *(grid * unit), C]``."""
    d = len(grid)
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, *grid, *unit, c)
    order = [0] + [i for j in range(1, d + 1) for i in (j, j + d)] + [2 * d + 1]
    return x.permute(order).reshape(b, *(g * u for g, u in zip(grid, unit)), c)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (names as timm's ``Mlp``, which upstream uses)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MaskUnitAttention(nn.Module):
    """Attention within mask units (windows) or over all tokens, with optional query pooling.

    Parameters
    ----------
    dim, dim_out : int
        Input and output widths.
    heads : int
        Attention heads.
    q_stride : int
        Flattened query-pooling stride (4 for 2x2); 1 = no pooling.
    window_size : int
        Flattened mask-unit size *after* this block's pooling.
    use_mask_unit_attn : bool
        Attend within mask units (True) or globally (False).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        heads: int,
        q_stride: int = 1,
        window_size: int = 0,
        use_mask_unit_attn: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out, self.heads, self.q_stride = dim, dim_out, heads, q_stride
        self.head_dim = dim_out // heads
        self.window_size, self.use_mask_unit_attn = window_size, use_mask_unit_attn
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: unrolled tokens ``[B, N, dim]`` -> ``[B, N / q_stride, dim_out]``."""
        n_win = x.shape[1] // (self.q_stride * self.window_size) if self.use_mask_unit_attn else 1
        # window index is the least significant digit of the token index
        qkv = rearrange(self.qkv(x), "b (t w) (k h d) -> k b (h w) t d", w=n_win, k=3, h=self.heads)
        q, k, v = qkv.unbind(0)  # each [B, heads * windows, tokens, head_dim]: 4-D for fused SDPA
        if self.q_stride > 1:
            q = rearrange(q, "b hw (s t) d -> b hw s t d", s=self.q_stride).amax(dim=2)
        x = F.scaled_dot_product_attention(q, k, v)
        x = rearrange(x, "b (h w) t d -> b (t w) (h d)", h=self.heads)
        return self.proj(x)


class HieraBlock(nn.Module):
    """Pre-norm transformer block; the first block of a stage widens and pools the residual too."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        q_stride: int = 1,
        window_size: int = 0,
        use_mask_unit_attn: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskUnitAttention(
            dim, dim_out, heads, q_stride, window_size, use_mask_unit_attn
        )
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = pool_tokens(self.proj(x_norm), self.attn.q_stride)
        x = x + self.drop_path(self.attn(x_norm))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Strided convolution stem (Conv2d or Conv3d by the kernel's length)."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[len(kernel)]
        self.proj = conv(in_chans, dim, kernel_size=kernel, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, C, *size]``, ``mask`` ``[B, *unit grid]`` (True = visible) -> ``[B, N, D]``."""
        if mask is not None:  # masked conv: zero the dropped units so the 7x7 kernels cannot leak
            up = F.interpolate(mask[:, None].to(x.dtype), size=x.shape[2:], mode="nearest")
            x = x * up
        return self.proj(x).flatten(2).transpose(1, 2)


class Head(nn.Module):
    """Classification head (``head.projection`` as upstream); returns logits."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(x))


def _unroll_order(size: Sequence[int], schedule: Sequence[Sequence[int]]) -> torch.Tensor:
    """Raster token indices in unrolled order: position ``p`` holds raster token ``order[p]``.

    The unrolled index is a mixed-radix number whose digits are, most significant first, the offset
    inside each stride of ``schedule`` in turn, then the coarse position left after all strides.
    """
    coords = _raster_coords(size)
    key = torch.zeros(len(coords), dtype=torch.long, device="cpu")
    div = [1] * len(size)
    for strides in schedule:
        for j, s in enumerate(strides):
            key = key * s + (coords[:, j] // div[j]) % s
        div = [d * s for d, s in zip(div, strides)]
    for j, n in enumerate(size):
        key = key * (n // div[j]) + coords[:, j] // div[j]
    return torch.argsort(key)


def _raster_coords(size: Sequence[int]) -> torch.Tensor:
    """Integer coordinates ``[prod(size), len(size)]`` of a grid in raster order."""
    grids = torch.meshgrid(*[torch.arange(n, device="cpu") for n in size], indexing="ij")
    return torch.stack(grids, dim=-1).reshape(-1, len(size))


def _raster_index(coords: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    idx = torch.zeros(len(coords), dtype=torch.long, device="cpu")
    for j, n in enumerate(size):
        idx = idx * n + coords[:, j]
    return idx


class Hiera(nn.Module):
    """Hiera encoder for ``[B, C, H, W]`` (2D) or ``[B, C, T, H, W]`` (3D) inputs.

    Implements :class:`efm.interfaces.Backbone`. The length of ``input_size`` decides 2D or 3D; the
    options are those of :class:`efm_plugins.backbones.hiera_config.HieraConfig`, the sizes those of
    the ``hiera_*`` builders below.

    Parameters
    ----------
    embed_dim, num_heads : int
        Width and heads of the first stage; each later stage multiplies them by ``dim_mul`` and
        ``head_mul``.
    stages : tuple of int
        Blocks per stage.
    **options
        See :class:`~efm_plugins.backbones.hiera_config.HieraConfig`.
    """

    accepts = ("image",)

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: Sequence[int] = (2, 3, 16, 3),
        *,
        input_size: Sequence[int] = (224, 224),
        in_chans: int | None = None,
        num_classes: int = 0,
        q_pool: int = 2,
        q_stride: Sequence[int] | None = None,
        mask_unit_size: Sequence[int] | None = None,
        mask_unit_attn: Sequence[bool] = (True, True, False, False),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        patch_kernel: Sequence[int] | None = None,
        patch_stride: Sequence[int] | None = None,
        patch_padding: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        head_dropout: float = 0.0,
        sep_pos_embed: bool | None = None,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        d = len(input_size)
        if d not in _DEFAULTS:
            raise ConfigError(
                [
                    f"hiera: input_size must have 2 (H, W) or 3 (T, H, W) entries, "
                    f"got {list(input_size)}"
                ]
            )
        given = {
            "q_stride": q_stride,
            "mask_unit_size": mask_unit_size,
            "patch_kernel": patch_kernel,
            "patch_stride": patch_stride,
            "patch_padding": patch_padding,
            "in_chans": in_chans,
            "sep_pos_embed": sep_pos_embed,
        }
        opt: dict[str, Any] = {k: (_DEFAULTS[d][k] if v is None else v) for k, v in given.items()}
        tup = {
            k: tuple(int(i) for i in opt[k])
            for k in ("q_stride", "mask_unit_size", "patch_kernel", "patch_stride", "patch_padding")
        }
        self.input_size = tuple(int(i) for i in input_size)
        self.in_chans = int(opt["in_chans"])
        self.sep_pos_embed = bool(opt["sep_pos_embed"])
        self.q_pool, self.q_stride = q_pool, tup["q_stride"]
        self.mask_unit_size = tup["mask_unit_size"]
        stages = tuple(int(s) for s in stages)
        _validate(self.input_size, stages, q_pool, mask_unit_attn, self.sep_pos_embed, tup)
        # what decides the function the weights compute (saved with efm checkpoints, checked on
        # load); not the head (visible in the keys: a classifier may start from an encoder)
        self._architecture: dict[str, Any] = {
            "embed_dim": int(embed_dim),
            "num_heads": int(num_heads),
            "stages": list(stages),
            "input_size": list(self.input_size),
            "in_chans": self.in_chans,
            "q_pool": int(q_pool),
            **{k: list(v) for k, v in tup.items()},
            "mask_unit_attn": [bool(a) for a in mask_unit_attn],
            "dim_mul": float(dim_mul),
            "head_mul": float(head_mul),
            "mlp_ratio": float(mlp_ratio),
            "sep_pos_embed": self.sep_pos_embed,
        }

        self.tokens_spatial_shape = [i // s for i, s in zip(self.input_size, tup["patch_stride"])]
        self.mask_spatial_shape = [
            t // m for t, m in zip(self.tokens_spatial_shape, self.mask_unit_size)
        ]
        self.stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
        self.num_classes = num_classes
        self.activation_checkpointing = activation_checkpointing

        self.patch_embed = PatchEmbed(
            self.in_chans, embed_dim, tup["patch_kernel"], tup["patch_stride"], tup["patch_padding"]
        )
        n_tokens = math.prod(self.tokens_spatial_shape)
        if self.sep_pos_embed:
            t, h, w = self.tokens_spatial_shape
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, embed_dim))

        # blocks; the flag of the current stage is read before the stage counter moves, so the
        # pooling block of a new stage still uses its predecessor's attention kind (as upstream)
        flat_q, flat_mu = math.prod(self.q_stride), math.prod(self.mask_unit_size)
        q_pool_blocks = [e + 1 for e in self.stage_ends[:q_pool]]
        depth = sum(stages)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList()
        self.stage_dims: list[int] = []
        dim, heads, stage = embed_dim, num_heads, 0
        for i in range(sum(stages)):
            dim_out, use_mu = dim, bool(mask_unit_attn[stage])
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = int(dim * dim_mul), int(heads * head_mul), stage + 1
                if i in q_pool_blocks:
                    flat_mu //= flat_q
            self.blocks.append(
                HieraBlock(
                    dim,
                    dim_out,
                    heads,
                    mlp_ratio,
                    dpr[i],
                    flat_q if i in q_pool_blocks else 1,
                    flat_mu,
                    use_mu,
                )
            )
            dim = dim_out
            if i in self.stage_ends:
                self.stage_dims.append(dim)
        self.embed_dim = dim
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if num_classes > 0:
            self.head = Head(dim, num_classes, head_dropout)
        self._build_layout()
        self._init_weights()

    # -- layout ---------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        """Precompute the unroll gather and, per stage, the in-unit reroll permutation."""
        size, n_stages = self.tokens_spatial_shape, len(self.stage_ends)
        order = _unroll_order(size, [self.q_stride] * (n_stages - 1))
        self.register_buffer("unroll_idx", order, persistent=False)
        coords = _raster_coords(size)[order]  # coordinates of the unrolled tokens
        n_units = math.prod(self.mask_spatial_shape)
        self.stage_units: list[tuple[int, ...]] = []  # mask-unit shape of each stage's tokens
        self.stage_grids: list[tuple[int, ...]] = []  # token grid of each stage
        for s in range(n_stages):
            f = [q ** min(s, self.q_pool) for q in self.q_stride]
            unit = tuple(m // fi for m, fi in zip(self.mask_unit_size, f))
            n_s = n_units * math.prod(unit)
            f_t, unit_t = torch.tensor(f, device="cpu"), torch.tensor(unit, device="cpu")
            pooled = coords[:n_s] // f_t  # first slice of every pooled window
            unit_idx = _raster_index(pooled // unit_t, self.mask_spatial_shape)
            if not torch.equal(unit_idx, torch.arange(n_s, device="cpu") % n_units):
                raise RuntimeError("hiera: the mask-unit index must be the last unrolled digit")
            within = _raster_index(pooled[::n_units] % unit_t, unit)
            self.register_buffer(f"reroll_{s}", torch.argsort(within), persistent=False)
            self.stage_units.append(unit)
            self.stage_grids.append(tuple(g * u for g, u in zip(self.mask_spatial_shape, unit)))

    def _reroll(self, x: torch.Tensor, stage: int, n_units: int, spatial: bool) -> torch.Tensor:
        """Stage tokens ``[B, N, C]`` -> ``[B, *grid, C]`` or ``[B, n_units, *unit, C]``."""
        perm: torch.Tensor = getattr(self, f"reroll_{stage}")
        x = rearrange(x, "b (r m) c -> b m r c", m=n_units).index_select(2, perm)
        x = x.reshape(x.shape[0], n_units, *self.stage_units[stage], x.shape[-1])
        if spatial:
            return undo_windowing(x, self.mask_spatial_shape, self.stage_units[stage])
        return x

    # -- init and checkpoints ---------------------------------------------------------------------
    def _init_weights(self) -> None:
        """Upstream's supervised init: trunc-normal 0.02 weights, 0.02 biases, head scaled 1e-3."""
        for p in (
            [self.pos_embed_spatial, self.pos_embed_temporal]
            if self.sep_pos_embed
            else [self.pos_embed]
        ):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv3d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.constant_(m.bias, 0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0.02)
                nn.init.constant_(m.weight, 1.0)
        if self.num_classes > 0:
            with torch.no_grad():
                self.head.projection.weight.mul_(1e-3)
                self.head.projection.bias.mul_(1e-3)

    def architecture(self) -> dict[str, Any]:
        """The options that decide what the weights compute (JSON-able).

        efm stores them in the metadata of the checkpoints it saves and refuses to load weights
        into a model whose architecture differs (:func:`efm.train.checkpoint.load_weights`): several
        of them (``q_pool``, ``q_stride``, ``mask_unit_size``, ``mask_unit_attn``, ``num_heads``,
        ``patch_stride``) change no parameter shape, so a plain ``load_state_dict`` cannot tell.
        """
        return dict(self._architecture)

    def load_reference_state_dict(
        self, state_dict: dict[str, Any], strict: bool = True, *, q_pool: int | None = None
    ) -> Any:
        """Load weights saved by the upstream implementation.

        Parameters
        ----------
        state_dict : dict
            An upstream checkpoint's ``model_state`` (or the checkpoint itself). MAE checkpoints carry
            no final ``norm``; it keeps its initial values. Decoder weights are ignored (load them
            with :func:`efm_plugins.objectives.mae.load_reference_mae`).
        strict : bool
            Raise :class:`efm.errors.ConfigError` on missing or unexpected keys.
        q_pool : int, optional
            The ``q_pool`` the weights were made for. None infers it from the checkpoint's kind,
            as upstream builds them: a classifier (``head.projection`` present: ``hiera_*_224``,
            the ``*_ft_*`` checkpoints) uses ``q_pool=3``, an MAE checkpoint (decoder keys, no
            head: ``mae_hiera_*``) ``q_pool=2``. A checkpoint with neither must say. A model built
            with another ``q_pool`` is refused: ``q_pool`` has no parameters, so the weights would
            load and compute something else (the reference ``hiera_base_224`` under ``q_pool=2``
            ends on a 14 x 14 grid instead of 7 x 7, logits off by about 13%). Pass the model's
            own value to deliberately reuse weights under another pooling (upstream fine-tunes its
            ``q_pool=2`` MAE encoders as ``q_pool=3`` classifiers).

        Notes
        -----
        Detected from the state dict's keys and shapes (a mismatch fails to load): the stage
        depths and widths, ``embed_dim``, ``mlp_ratio``, ``in_chans``, ``patch_kernel``, the number
        of patch tokens (``input_size / patch_stride``), separable position embeddings and the head
        size. Not detectable (no parameter depends on them): ``q_pool``, ``q_stride``,
        ``mask_unit_size``, ``mask_unit_attn``, ``num_heads`` / ``head_mul``, ``patch_stride`` and
        ``patch_padding`` beyond the token count, and ``input_size``'s aspect at a given token count;
        they must match the reference model's (upstream's defaults are efm's 2D defaults).
        """
        sd = state_dict.get("model_state", state_dict)
        is_mae = any(k.startswith(_MAE_ONLY) for k in sd)
        has_head = any(k.startswith("head.") for k in sd)
        if q_pool is None:
            if not (has_head or is_mae):
                raise ConfigError(
                    [
                        "hiera: cannot tell which q_pool these reference weights were made for "
                        "(no classification head, no MAE decoder); pass q_pool= (upstream: 3 for "
                        "hiera_*_224 classifiers, 2 for mae_hiera_* models)"
                    ]
                )
            q_pool = 3 if has_head else 2
            kind = "a reference classifier" if has_head else "a reference MAE model"
        else:
            kind = "the caller"
        if q_pool != self.q_pool:
            raise ConfigError(
                [
                    f"hiera: these reference weights were made for q_pool={q_pool} ({kind}), this "
                    f"model has q_pool={self.q_pool}: they would load and compute something else; "
                    f"build it with backbone.q_pool={q_pool}"
                ]
            )
        sd = {k: v for k, v in sd.items() if not k.startswith(_MAE_ONLY)}
        if self.num_classes == 0:
            sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        try:
            result = self.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # shape mismatches
            msg = str(exc).replace("\n", " ")
            raise ConfigError(
                [f"hiera: reference checkpoint does not fit this model: {msg}"]
            ) from exc
        missing = [k for k in result.missing_keys if not (is_mae and k.startswith("norm."))]
        if strict and (missing or result.unexpected_keys):
            raise ConfigError(
                [
                    f"hiera: reference checkpoint does not match: missing {missing}, "
                    f"unexpected {result.unexpected_keys} (check in_chans, input_size "
                    f"and the size)"
                ]
            )
        return result

    # -- forward --------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        d = len(self.input_size)
        if x.ndim == d + 1 and self.in_chans == 1:
            x = x.unsqueeze(1)  # [B, T, H, W] -> [B, 1, T, H, W]
        if tuple(x.shape[1:]) != (self.in_chans, *self.input_size):
            raise ConfigError(
                [
                    f"hiera was built for inputs [B, {self.in_chans}, "
                    f"{', '.join(map(str, self.input_size))}] but got {list(x.shape)}; "
                    f"set backbone.input_size / backbone.in_chans to match the "
                    f"representation"
                ]
            )
        return x

    def _pos_embed(self) -> torch.Tensor:
        if self.sep_pos_embed:  # [1, T*H*W, D], time-major
            pos = self.pos_embed_temporal[:, :, None] + self.pos_embed_spatial[:, None]
            return pos.flatten(1, 2)
        return self.pos_embed

    def _encode(
        self, x: torch.Tensor, mask: torch.Tensor | None, keep: bool, n_visible: int | None = None
    ) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
        """Blocks over the visible tokens; returns final tokens, kept units and stage outputs."""
        x = self._check_input(x)
        b = x.shape[0]
        n_units = math.prod(self.mask_spatial_shape)
        if mask is not None:
            mask = mask.reshape(b, n_units).bool()
            if mask.device.type == "meta" and n_visible is not None:  # no values to count
                counts = [n_visible] * b
            else:
                counts = mask.sum(dim=1).tolist()
            if len(set(counts)) != 1 or counts[0] == 0:
                raise ValueError(
                    f"hiera: every sample must keep the same, non-zero number of "
                    f"mask units; got {counts}"
                )
            x = self.patch_embed(x, mask.view(b, *self.mask_spatial_shape))
        else:
            x = self.patch_embed(x)
        unroll: torch.Tensor = self.unroll_idx  # type: ignore[assignment]
        x = (x + self._pos_embed()).index_select(1, unroll)  # [B, N, D] unrolled
        if mask is not None:
            ids = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, : counts[0]]
            x = rearrange(x, "b (r m) c -> b r m c", m=n_units)
            x = x.gather(2, ids[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[-1]))
            x, n_units = x.flatten(1, 2), counts[0]
        stage_out: list[torch.Tensor] = []
        ckpt = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, blk in enumerate(self.blocks):
            x = checkpoint(blk, x, use_reentrant=False) if ckpt else blk(x)
            if keep and i in self.stage_ends:
                stage_out.append(x)
        return x, n_units, stage_out

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        intermediates: bool = True,
        *,
        n_visible: int | None = None,
    ) -> BackboneOutput:
        """Encode an image batch.

        Parameters
        ----------
        x : Tensor, shape (B, C, H, W) or (B, C, T, H, W)
            The representation's output (``[B, T, H, W]`` accepted when ``in_chans`` is 1).
        mask : Tensor of bool, shape (B, *mask_shape) or (B, #units) | None
            True = visible mask unit; every sample must keep the same number. Dropped units are
            zeroed before the stem and their tokens never enter the blocks.
        intermediates : bool
            Also return every stage's features.
        n_visible : int, optional
            Visible units per sample, when the caller knows it; needed only on the ``meta``
            device (shape checks without data), where the mask's values cannot be read.

        Returns
        -------
        BackboneOutput
            ``features`` ``[B, L, D]``: last stage, raster order without a mask, else
            ``[B, kept * unit, D]`` grouped by kept unit (ascending unit index). ``intermediates``:
            per stage, ``[B, *grid_s, C_s]`` without a mask, ``[B, kept, *unit_s, C_s]`` with one.
            ``extra``: ``token_grid`` (last stage's full grid), ``mask_unit_grid``,
            ``stage_units`` (per-stage unit shapes), ``n_units`` (kept units).
        """
        last, n_units, stages = self._encode(x, mask, keep=intermediates, n_visible=n_visible)
        spatial = mask is None
        inter = [self._reroll(s, i, n_units, spatial) for i, s in enumerate(stages)]
        final = (
            inter[-1] if inter else self._reroll(last, len(self.stage_ends) - 1, n_units, spatial)
        )
        extra = {
            "token_grid": self.stage_grids[-1],
            "mask_unit_grid": tuple(self.mask_spatial_shape),
            "stage_units": list(self.stage_units),
            "n_units": n_units,
        }
        return BackboneOutput(features=final.flatten(1, -2), intermediates=inter, extra=extra)

    def param_groups(self) -> dict[str, str]:
        """Muon for the blocks' linear weights (attention, MLP, stage projections); AdamW for the
        stem, position embeddings, norms, biases and the head."""
        linear = {f"{n}.weight" for n, m in self.named_modules() if isinstance(m, nn.Linear)}
        return {
            n: "muon" if n in linear and n.startswith("blocks.") else "adamw"
            for n, _ in self.named_parameters()
        }

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute every block in the backward pass (the optional capability of the interface)."""
        self.activation_checkpointing = bool(enabled)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the last stage's tokens, layer-normed: ``[B, embed_dim]`` (upstream's pre-head)."""
        last, _, _ = self._encode(x, None, keep=False)
        return self.norm(last.mean(dim=1))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of the classification head (needs ``num_classes > 0``)."""
        if self.num_classes <= 0:
            raise ConfigError(["hiera: classify() needs num_classes > 0"])
        return self.head(self.embed(x))

    def mask_shape(self, x: Any = None) -> tuple[int, ...]:
        """The mask-unit grid, e.g. ``(7, 7)`` at 224 x 224 or ``(8, 7, 7)`` for 8 x 224 x 224."""
        if x is not None:
            self._check_input(x)
        return tuple(self.mask_spatial_shape)

    def example_input(self, batch_size: int) -> torch.Tensor:
        """Random input ``[B, in_chans, *input_size]`` on the model's device."""
        device = self.patch_embed.proj.weight.device
        return torch.randn(batch_size, self.in_chans, *self.input_size, device=device)


# -- sizes: builders that only set numbers (from HIERA_SIZES, the registry's table too) -------------------------------------------------------
def hiera_tiny(**cfg: Any) -> Hiera:
    """Hiera-T: 96 wide, 1 head, stages (1, 2, 7, 2)."""
    return Hiera(**(HIERA_SIZES["tiny"] | cfg))


def hiera_small(**cfg: Any) -> Hiera:
    """Hiera-S: 96 wide, 1 head, stages (1, 2, 11, 2)."""
    return Hiera(**(HIERA_SIZES["small"] | cfg))


def hiera_base(**cfg: Any) -> Hiera:
    """Hiera-B: 96 wide, 1 head, stages (2, 3, 16, 3) (51.5M parameters with a 1000-class head)."""
    return Hiera(**(HIERA_SIZES["base"] | cfg))


def hiera_base_plus(**cfg: Any) -> Hiera:
    """Hiera-B+: 112 wide, 2 heads, stages (2, 3, 16, 3)."""
    return Hiera(**(HIERA_SIZES["base_plus"] | cfg))


def hiera_large(**cfg: Any) -> Hiera:
    """Hiera-L: 144 wide, 2 heads, stages (2, 6, 36, 4) (213.7M with a 1000-class head)."""
    return Hiera(**(HIERA_SIZES["large"] | cfg))


def hiera_huge(**cfg: Any) -> Hiera:
    """Hiera-H: 256 wide, 4 heads, stages (2, 6, 36, 4)."""
    return Hiera(**(HIERA_SIZES["huge"] | cfg))


def hiera_test(**cfg: Any) -> Hiera:
    """A tiny Hiera for tests and CPU demos: 16 wide, 1 head, stages (1, 1, 2, 1)."""
    return Hiera(**(HIERA_SIZES["test"] | cfg))
