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
    """``10 log10(power + floor)`` (flash-eeg's dB)."""
    return 10.0 * torch.log10(power + floor)


def flash_target_freqs(fmin: float, fmax: float, breakpoint: float, n_out: int) -> torch.Tensor:
    """flash-eeg's output frequency axis: positions ``linspace(0, 2, n_out)``; below 1 log-spaced
    from ``fmin`` towards ``breakpoint``, from 1 on linear from ``breakpoint`` to ``fmax`` (float32).
    """
    pos = torch.linspace(0, 2, n_out, dtype=torch.float32)
    log_ratio = torch.log10(torch.tensor(breakpoint / fmin, dtype=torch.float32))
    low = fmin * torch.pow(10.0, pos * log_ratio)
    high = breakpoint + (pos - 1.0) * (fmax - breakpoint)
    return torch.where(pos < 1.0, low, high)


def run_chunked(
    fn, x: torch.Tensor, rows: int, out_shape: tuple[int, ...], out_dtype: torch.dtype
) -> torch.Tensor:
    """Apply ``fn`` to slices of ``x`` along dim 0 of at most ``rows`` and fill one output.

    Bounds peak memory to one chunk of intermediates; the loop is over a handful of large blocks
    (a static count under ``torch.compile``), never over samples or channels one by one.
    """
    b = x.shape[0]
    rows = max(1, int(rows))
    if b <= rows:
        return fn(x).to(out_dtype)
    out = x.new_empty((b, *out_shape), dtype=out_dtype)
    for start in range(0, b, rows):
        out[start : start + rows] = fn(x[start : start + rows]).to(out_dtype)
    return out


def upcast(x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """``x`` in float32 (FFT work is always fp32) and the dtype to return the result in."""
    return x.float(), x.dtype
