"""Options of the ``hiera_*`` backbones (light module: no torch import, used by config validation).

Sizes (``embed_dim``, ``num_heads``, ``stages``) are the numbers of each registered name
(:data:`HIERA_SIZES`, registered as sized schemas with :func:`efm.registry.sized`); everything here
is an option that any size takes. ``None`` means "chosen from the dimensionality": the length of
``input_size`` decides between the 2D image model and the 3D one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from efm.errors import ConfigError

# Registered as ``hiera_<size>``; the numbers live in the builders of ``efm_plugins.backbones.hiera``.
#: size -> its numbers (upstream's hiera_tiny_224 ... hiera_huge_224, and a tiny one for tests)
HIERA_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2)},
    "small": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2)},
    "base": {"embed_dim": 96, "num_heads": 1, "stages": (2, 3, 16, 3)},
    "base_plus": {"embed_dim": 112, "num_heads": 2, "stages": (2, 3, 16, 3)},
    "large": {"embed_dim": 144, "num_heads": 2, "stages": (2, 6, 36, 4)},
    "huge": {"embed_dim": 256, "num_heads": 4, "stages": (2, 6, 36, 4)},
    "test": {"embed_dim": 16, "num_heads": 1, "stages": (1, 1, 2, 1)},
}
# every size has four stages (only their number matters to the checks below)
N_STAGES = 4

# Defaults chosen by the number of spatial dimensions (2: image, 3: EPI-250k "video" of regions).
DEFAULTS: dict[int, dict[str, Any]] = {
    2: {
        "q_stride": (2, 2),
        "mask_unit_size": (8, 8),
        "patch_kernel": (7, 7),
        "patch_stride": (4, 4),
        "patch_padding": (3, 3),
        "in_chans": 8,
        "sep_pos_embed": False,
    },
    3: {
        "q_stride": (1, 2, 2),
        "mask_unit_size": (1, 8, 8),
        "patch_kernel": (1, 7, 7),
        "patch_stride": (1, 4, 4),
        "patch_padding": (0, 3, 3),
        "in_chans": 1,
        "sep_pos_embed": True,
    },
}


@dataclass
class HieraConfig:
    """Options of a Hiera backbone.

    ``embed_dim``, ``num_heads``, ``stages``: the size's numbers (set by the registered name).
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

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
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

    def check(self) -> list[str]:
        """Hiera's own constructor checks, from the options alone (config validation calls this)."""
        if self.input_size is None:  # derived elsewhere
            return []
        size = tuple(int(i) for i in self.input_size)
        d = len(size)
        if d not in DEFAULTS:
            return [
                f"hiera: input_size must have 2 (H, W) or 3 (T, H, W) entries, got {list(size)}"
            ]
        tup = {
            k: tuple(
                int(i) for i in (DEFAULTS[d][k] if getattr(self, k) is None else getattr(self, k))
            )
            for k in ("q_stride", "mask_unit_size", "patch_kernel", "patch_stride", "patch_padding")
        }
        sep = DEFAULTS[d]["sep_pos_embed"] if self.sep_pos_embed is None else self.sep_pos_embed
        try:
            validate(size, (1,) * N_STAGES, self.q_pool, self.mask_unit_attn, bool(sep), tup)
        except ConfigError as exc:
            return exc.problems
        return []


def validate(
    size: tuple[int, ...],
    stages: tuple[int, ...],
    q_pool: int,
    mask_unit_attn: Sequence[bool],
    sep: bool,
    tup: dict[str, tuple[int, ...]],
) -> None:
    """Collect every problem with a Hiera configuration into one ConfigError."""
    d, problems = len(size), []
    for k, v in tup.items():
        if len(v) != d:
            problems.append(f"hiera: {k}={list(v)} must have {d} entries like input_size")
    if not 0 <= q_pool < len(stages):
        problems.append(f"hiera: q_pool={q_pool} must be in [0, {len(stages) - 1}]")
    if len(mask_unit_attn) < len(stages):
        problems.append(f"hiera: mask_unit_attn needs {len(stages)} entries")
    if sep and d != 3:
        problems.append("hiera: sep_pos_embed needs a 3D input_size (T, H, W)")
    if problems:
        raise ConfigError(problems)
    unit = [q ** (len(stages) - 1) for q in tup["q_stride"]]
    if list(tup["mask_unit_size"]) != unit:
        problems.append(
            f"hiera: mask_unit_size={list(tup['mask_unit_size'])} must equal "
            f"q_stride ** {len(stages) - 1} = {unit}"
        )
    ker, s, p = tup["patch_kernel"], tup["patch_stride"], tup["patch_padding"]
    for j in range(d):
        tokens = (size[j] + 2 * p[j] - ker[j]) // s[j] + 1
        if tokens != size[j] // s[j] or (size[j] // s[j]) % unit[j] or size[j] % s[j]:
            step = s[j] * unit[j]
            problems.append(
                f"hiera: input_size[{j}]={size[j]} must be a multiple of "
                f"patch_stride * mask unit = {step} (e.g. {max(step, size[j] // step * step)})"
                f" with a stem that keeps size / stride tokens"
            )
    if problems:
        raise ConfigError(problems)
