"""Options of the ``hiera_*`` backbones (light module: no torch import, used by config validation).

Sizes (``embed_dim``, ``num_heads``, ``stages``) are fixed by each registered name; everything here is
an option that any size takes. ``None`` means "chosen from the dimensionality": the length of
``input_size`` decides between the 2D image model and the 3D one.
"""

from __future__ import annotations

from dataclasses import dataclass

# Registered as ``hiera_<size>``; the numbers live in the builders of ``efm_plugins.backbones.hiera``.
HIERA_SIZES = ("tiny", "small", "base", "base_plus", "large", "huge", "test")


@dataclass
class HieraConfig:
    """Options of a Hiera backbone.

    ``input_size`` and ``in_chans`` are derived from the representation's output by
    :mod:`efm.assemble` when None ("None = derived"; an explicit value that disagrees is an error).
    ``input_size``: None alone = ``(224, 224)``; ``(H, W)`` for 2D inputs ``[B, C, H, W]`` (EPI-250k: the 8 regional channels as
    colour planes), ``(T, H, W)`` for 3D inputs ``[B, n_repr, T, H, W]`` (EPI-250k 3D: ``T`` = the 8
    regions as frames, ``n_repr`` stacked representations as input channels). ``H`` and ``W`` must be
    multiples of ``patch_stride * q_stride ** 3`` (32 by default).
    ``in_chans``: input channels; None = 8 in 2D (regions) and 1 in 3D (one representation; a 4-D
    ``[B, T, H, W]`` input is then accepted too).
    ``num_classes``: 0 = no classification head; >0 adds ``head.projection`` (for loading fine-tuned
    reference checkpoints and :meth:`Hiera.classify`).
    ``q_pool``: stages that pool their queries (2 for MAE pretraining, 3 for reference classifiers;
    weights load either way).
    ``q_stride``, ``mask_unit_size``, ``patch_kernel``, ``patch_stride``, ``patch_padding``: None =
    ``2x2, 8x8, 7x7, 4x4, 3x3`` in 2D and ``1x2x2, 1x8x8, 1x7x7, 1x4x4, 0x3x3`` in 3D (no mixing
    across frames in the stem). Reference video checkpoints use ``3x7x7 / 2x4x4 / 1x3x3``.
    ``sep_pos_embed``: separate spatial + temporal position tables; None = on in 3D only.
    ``activation_checkpointing``: recompute every block in the backward pass (saves memory).
    """

    input_size: tuple[int, ...] | None = None
    in_chans: int | None = None
    num_classes: int = 0
    q_pool: int = 2
    q_stride: tuple[int, ...] | None = None
    mask_unit_size: tuple[int, ...] | None = None
    mask_unit_attn: tuple[bool, ...] = (True, True, False, False)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    patch_kernel: tuple[int, ...] | None = None
    patch_stride: tuple[int, ...] | None = None
    patch_padding: tuple[int, ...] | None = None
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    sep_pos_embed: bool | None = None
    activation_checkpointing: bool = False
