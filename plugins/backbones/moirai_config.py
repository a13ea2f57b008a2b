"""Config schema and sizes of the MOIRAI / DIVER-1 backbone (no torch import: validation stays cheap).

Sizes follow DIVER-1 (arXiv 2512.19097, Table 4; DIVER-Project/DIVER-1): 12 layers, head size 32,
widths 256 (Tiny) to 3072 (XXL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from efm.registry import sized

# name -> d_model; every size has 12 layers and heads = d_model // 32
SIZES: dict[str, int] = {
    "tiny": 256,
    "small": 512,
    "base": 768,
    "large": 1024,
    "xl": 2048,
    "xxl": 3072,
}


@dataclass
class MoiraiConfig:
    """The any-variate MOIRAI encoder with DIVER-1's embedder.

    Parameters
    ----------
    d_model : int
        Width; a multiple of ``head_dim`` (and of 16 for the CNN patch embedder).
    n_layers : int
        Encoder depth (12 for every DIVER-1 size).
    head_dim : int
        Size of each attention head (32 in DIVER-1); heads = ``d_model // head_dim``.
    kv_groups : int | None
        Key/value heads for grouped-query attention; ``None`` = as many as query heads (DIVER-1).
    ffn_mult : float
        Gated FFN hidden width as a multiple of ``d_model`` (DIVER-1: 4).
    patch_len : int | None
        Samples per patch the representation produces (50 = 0.1 s or 500 = 1 s at 500 Hz); None =
        derived from the representation by :mod:`efm.assemble` (50 when built alone).
    rope_fraction : float
        Fraction of each head's dims that get the rotary time encoding: 1.0 in DIVER-1 (and its
        checkpoints), 0.5 in MOIRAI (uni2ts ``partial_factor=(0, 0.5)``).
    rope_base : float
        RoPE base.
    dropout : float
        Attention-probability and residual dropout in the encoder (DIVER-1: 0.1); the spectral
        embedding uses the same rate.
    stcpe_window : int
        Patches per STCPE window (7); 0 disables STCPE.
    registers : bool
        Prepend DIVER-1's register tokens (per channel, per time step, global).
    input_scale : float
        Patches are multiplied by this on entry (µV -> DIVER-1's units: ``1 / input_norm_factor``).
    mup : bool
        muP: ``1/head_dim`` attention scale, ``lr_multipliers()`` for hidden matrices, readout
        multiplier ``1 / width_mult`` in heads built with :func:`readout`.
    mup_base_width : int
        The width at which muP and standard parametrisation coincide (DIVER-1: 256).
    attention : str
        ``"sdpa"`` (dense bias, the reference and CPU path), ``"flex"`` (FlexAttention with block
        masks; compiled on CUDA) or ``"auto"`` (flex on CUDA, sdpa elsewhere).
    pack : bool
        Pack the valid tokens of several samples into shared rows (block-diagonal attention) instead
        of attending over padded channels.
    pack_len : int
        Row length for packing; rows are at least as long as the longest sample.
    embed_window : int | None
        :meth:`embed` of inputs longer than this many patches averages the embeddings of
        consecutive windows of this length; 0: embed the whole input. None = derived by
        :mod:`efm.assemble`: the longest training crop (``train.crops_s``) in patches, 0 without
        crops (and when built alone).
    diver_checkpoint : str | None
        A released DIVER-1 checkpoint (``.pt``, DeepSpeed ``{"module": ...}`` or a plain state dict)
        loaded into the backbone when it is built; the sizes must match (e.g. ``moirai_tiny`` with
        ``patch_len: 50`` for ``ieeg_pretrained_weights.pt``, ``moirai_small`` with ``patch_len: 500``
        for ``i_eeg_pretrained_weights.pt``).
    """

    d_model: int = 256
    n_layers: int = 12
    head_dim: int = 32
    kv_groups: int | None = None
    ffn_mult: float = 4.0
    patch_len: int | None = None
    rope_fraction: float = 1.0
    rope_base: float = 10000.0
    dropout: float = 0.1
    stcpe_window: int = 7
    registers: bool = True
    input_scale: float = 0.01
    mup: bool = True
    mup_base_width: int = 256
    attention: Literal["sdpa", "flex", "auto"] = "auto"
    pack: bool = False
    pack_len: int = 0
    embed_window: int | None = None
    diver_checkpoint: str | None = None

    def check(self) -> list[str]:
        """The constructor's checks of these options, without building the model (validation)."""
        problems = []
        d = self.d_model
        if self.head_dim < 1 or d % self.head_dim or d % 4:
            problems.append(f"d_model {d} must be a multiple of head_dim {self.head_dim} and of 4")
        if self.patch_len is None:  # None = derived (efm.assemble): checked once known
            pass
        elif self.patch_len < 1:
            problems.append(f"patch_len={self.patch_len} must be >= 1")
        else:  # the CNN patch embedder's output positions per patch (moirai.CNNPatchEmbed)
            padded = 1 << max(1, math.ceil(math.log2(self.patch_len)))
            n_pos = 16 if padded <= 64 else 8
            if d % n_pos:
                problems.append(
                    f"d_model {d} must be a multiple of {n_pos} for {self.patch_len}-sample patches"
                )
        heads = max(1, d // max(1, self.head_dim))
        if self.kv_groups is not None and (self.kv_groups < 1 or heads % self.kv_groups):
            problems.append(f"kv_groups={self.kv_groups} must divide the {heads} heads")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        return problems


def size_defaults(size: str) -> dict[str, int]:
    """Builder defaults of a named size (``"test"`` is a 2-layer, 64-wide model for CI)."""
    if size == "test":
        return {"d_model": 64, "n_layers": 2}
    return {"d_model": SIZES[size], "n_layers": 12}


#: ``moirai_<size>`` -> its config schema (sized with :func:`efm.registry.sized`)
CONFIGS: dict[str, type] = {
    f"moirai_{s}": sized(MoiraiConfig, f"moirai_{s}", **size_defaults(s)) for s in (*SIZES, "test")
}
