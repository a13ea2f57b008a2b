"""Helpers shared by the image representations: input checks, fp32 upcast, min-max, resize."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from efm_plugins.tokenizers.config import RepresentationError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_signal(x: torch.Tensor, name: str, min_times: int = 1) -> None:
    """Raise :class:`RepresentationError` unless ``x`` is a floating ``[B, C, T]`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise RepresentationError(
            f"{name}: expected a torch.Tensor [B, C, T], got {type(x).__name__}"
        )
    if x.ndim != 3:
        raise RepresentationError(
            f"{name}: expected a signal of shape [B, C, T], got shape {tuple(x.shape)}"
        )
    if x.dtype not in FLOAT_DTYPES:
        raise RepresentationError(
            f"{name}: expected a float32, float16 or bfloat16 signal, got {x.dtype}"
        )
    if x.shape[-1] < min_times:
        raise RepresentationError(
            f"{name}: needs at least {min_times} samples per channel, got {x.shape[-1]}"
        )


def check_option(name: str, key: str, value: object, allowed: tuple) -> None:
    """Raise :class:`RepresentationError` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise RepresentationError(f"{name}: {key}={value!r} is not one of {allowed}")


def minmax(x: torch.Tensor, dims: tuple[int, ...] = (-2, -1), eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to [0, 1] over ``dims`` (per sample and channel for the default last two)."""
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo + eps)


def resize(img: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to ``[B, C, size, size]`` (a no-op when already that size)."""
    if img.shape[-2:] == (size, size):
        return img
    if mode == "nearest":
        return F.interpolate(img, size=(size, size), mode="nearest")
    return F.interpolate(img, size=(size, size), mode=mode, align_corners=False)


def db(power: torch.Tensor, floor: float = 1e-10) -> torch.Tensor:
    """``10 log10(max(power, floor))``."""
    return 10.0 * torch.log10(power.clamp_min(floor))


def log_linear_freqs(fmin: float, fmax: float, breakpoint: float, n_out: int) -> torch.Tensor:
    """The output frequency axis: ``n_out // 2`` log-spaced in [fmin, breakpoint), the rest linear.

    The first half ends just below the breakpoint and the second half starts at it, so no frequency
    appears twice (flash-eeg's layout: log 1 -> 30 Hz, then linear 30 -> 100 Hz).
    """
    n_log = n_out // 2
    n_lin = n_out - n_log
    log_part = torch.logspace(
        torch.log10(torch.tensor(fmin, dtype=torch.float64)),
        torch.log10(torch.tensor(breakpoint, dtype=torch.float64)),
        n_log + 1,
        dtype=torch.float64,
    )[:-1]
    lin_part = torch.linspace(breakpoint, fmax, n_lin, dtype=torch.float64)
    return torch.cat([log_part, lin_part])


def interp_matrix(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``[len(dst), len(src)]`` weights of linear interpolation from grid ``src`` to points ``dst``.

    Points outside the grid are clamped to its ends. Applied as one matmul over all rows, so the
    frequency-axis resampling of every (sample, channel) is a single batched GEMM.
    """
    src = src.to(torch.float64)
    dst = dst.to(torch.float64).clamp(src[0], src[-1])
    hi = torch.searchsorted(src, dst, right=False).clamp(1, len(src) - 1)
    lo = hi - 1
    w_hi = (dst - src[lo]) / (src[hi] - src[lo])
    mat = torch.zeros(len(dst), len(src), dtype=torch.float64)
    rows = torch.arange(len(dst))
    mat[rows, lo] += 1.0 - w_hi
    mat[rows, hi] += w_hi
    return mat.to(torch.float32)


def upcast(x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """``x`` in float32 (FFT work is always fp32) and the dtype to return the result in."""
    return x.float(), x.dtype
