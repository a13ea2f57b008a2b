"""Helpers shared by the image representations: input checks, fp32 upcast, min-max, resize."""

from __future__ import annotations

import math

import numpy as np
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


def stretch_width(img: torch.Tensor, width: int) -> torch.Tensor:
    """Linear interpolation of ``[B, C, H, W]`` along its last axis to ``width`` (align_corners
    False), rows unchanged.

    On CUDA this is ``bilinear`` with the height kept (rows at scale 1 are exact, so the numbers
    equal the 1-D kernel's): CUDA's ``linear`` 1-D kernel runs one thread per output column and
    loops over all ``B * C * H`` rows, 160 ms per batch of 256 spectrograms on an H200 against
    1.3 ms for the 2-D kernel (benchmarks/results/device/profile_representations_cuda.json). On the
    CPU the 1-D kernel is the faster one.
    """
    b, c, h, w = img.shape
    if img.is_cuda:
        return F.interpolate(img, size=(h, width), mode="bilinear", align_corners=False)
    wide = F.interpolate(img.view(b, c * h, w), size=width, mode="linear", align_corners=False)
    return wide.view(b, c, h, width)


def band_bins(fmin: float, fmax: float, n: int, sfreq: float) -> tuple[int, int]:
    """First and last rFFT bin (both inclusive) of ``n`` samples at ``sfreq`` whose frequency
    ``k * sfreq / n`` lies in ``[fmin, fmax]``; ``(k0, k1)`` with ``k1 < k0`` when none does.

    Bands are selected by integer bin index in float64, never by comparing a float32 frequency
    grid with the edges: ``torch.fft.rfftfreq(7500, 1 / 250)[390]`` is 13.000001 in float32, which
    silently dropped every band's upper edge (8-13 Hz held 150 bins instead of 151). A bin within
    1e-9 of a bin width of an edge counts as on it (non-integer ``sfreq`` rounds).
    """
    k0 = max(0, math.ceil(fmin * n / sfreq - 1e-9))
    k1 = min(n // 2, math.floor(fmax * n / sfreq + 1e-9))
    return k0, k1


def band_mask(fmin: float, fmax: float, n: int, sfreq: float, device=None) -> torch.Tensor:
    """Boolean ``[n // 2 + 1]`` mask of the rFFT bins in ``[fmin, fmax]`` (see :func:`band_bins`)."""
    k0, k1 = band_bins(fmin, fmax, n, sfreq)
    k = torch.arange(n // 2 + 1, device=device)
    return (k >= k0) & (k <= k1)


def rfft_freqs(n: int, sfreq: float, device=None) -> torch.Tensor:
    """Frequencies of the rFFT bins of ``n`` samples, ``k * sfreq / n`` in float64 (exact on
    whole-number edges, unlike float32 ``rfftfreq``)."""
    return torch.arange(n // 2 + 1, dtype=torch.float64, device=device) * sfreq / n


def nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    """Source index of each output position under ``F.interpolate(mode="nearest")``."""
    src = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in)
    return F.interpolate(src, size=n_out, mode="nearest").view(n_out).long()


def db_power(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``10 log10(|z|^2 + 1e-10)`` of a complex tensor as a new contiguous fp32 tensor, or
    written into ``out`` (fp32, same shape)."""
    parts = torch.view_as_real(z)  # [..., 2]
    if out is None:
        out = torch.empty(z.shape, dtype=parts.dtype, device=z.device)
    torch.mul(parts[..., 0], parts[..., 0], out=out)
    return out.addcmul_(parts[..., 1], parts[..., 1]).add_(1e-10).log10_().mul_(10.0)


def flash_target_freqs(fmin: float, fmax: float, breakpoint: float, n_out: int) -> torch.Tensor:
    """flash-eeg's output frequency axis: positions ``linspace(0, 2, n_out)``; below 1 log-spaced
    from ``fmin`` towards ``breakpoint``, from 1 on linear from ``breakpoint`` to ``fmax`` (float32).
    """
    pos = torch.linspace(0, 2, n_out, dtype=torch.float32)
    log_ratio = torch.log10(torch.tensor(breakpoint / fmin, dtype=torch.float32))
    low = fmin * torch.pow(10.0, pos * log_ratio)
    high = breakpoint + (pos - 1.0) * (fmax - breakpoint)
    return torch.where(pos < 1.0, low, high)


CACHE_ELEMS = 1 << 21  # float32 intermediates per block in eager mode (8 MB: stays in cache)


def block_rows(
    per_sample: int,
    mem_elems: int,
    cache_elems: int | None = None,
    device: torch.device | None = None,
) -> int:
    """Rows (samples) per block: ``mem_elems`` bounds memory; in eager mode on the CPU the
    smaller ``cache_elems`` (default :data:`CACHE_ELEMS`) also keeps each block's intermediates
    in the CPU caches. Under ``torch.compile`` (inductor fuses the intermediates away) and on a
    GPU (where small blocks would only add kernel launches) the memory bound alone applies.

    With several intra-op threads the cache bound is per thread (each op splits a block between
    the threads); measured best on 2 cores (AMD EPYC, 512 KB L2): spectrogram 4, temporal
    matrix 2-4, WPLI 2-4 and bandpass 8-16 samples per block; on a 2-core Xeon (2 MB L2)
    bandpass 16-32 at 1 thread and 24-48 at 2 (23 and 46 chosen), WPLI 2-4.
    """
    rows = mem_elems // max(1, per_sample)
    on_cpu = device is None or device.type == "cpu"
    if on_cpu and not torch.compiler.is_compiling():
        cache_elems = (
            CACHE_ELEMS if cache_elems is None else cache_elems
        ) * torch.get_num_threads()
        rows = min(rows, cache_elems // max(1, per_sample))
    return max(1, rows)


def run_blocked(
    fn, x: torch.Tensor, rows: int, out_shape: tuple[int, ...], out_dtype: torch.dtype
) -> torch.Tensor:
    """Apply ``fn(x_block_fp32, out_block)`` to blocks of at most ``rows`` along dim 0 (as few
    blocks as that allows, of sizes that differ by at most one).

    ``fn`` writes its result into ``out_block`` (a slice of the preallocated output, possibly of
    a lower precision) when given one and returns it; given None it returns a new fp32 tensor.
    Eager mode writes every block in place (no extra copy of the output); under ``torch.compile``
    the blocks are assigned, and a batch within ``rows`` is one block. The loop is over blocks of
    samples sized for the caches or for memory, never over samples, channels or bands one by one.
    """
    b = x.shape[0]
    n = -(-b // max(1, rows))  # blocks; their sizes differ by at most one (no small last block)
    bounds = [i * b // n for i in range(n + 1)]
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
    if torch.compiler.is_compiling():
        if n == 1:
            return fn(x.float(), None).to(out_dtype)
        out = x.new_empty((b, *out_shape), dtype=out_dtype)
        for lo, hi in blocks:
            out[lo:hi] = fn(x[lo:hi].float(), None).to(out_dtype)
        return out
    out = new_output(x, (b, *out_shape), out_dtype)
    for lo, hi in blocks:
        fn(x[lo:hi].float(), out[lo:hi])
    return out


_NUMPY_DTYPES = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.float16: np.float16,
    torch.bfloat16: np.int16,  # same width, viewed as bfloat16
}


def new_output(x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised output tensor on ``x``'s device.

    On the CPU it is allocated through NumPy, which advises the kernel to back large arrays with
    transparent huge pages; writing a fresh 100 MB output then costs about a quarter of the page
    faults of torch's default allocation (measured: 0.18 vs 0.78 ms per 8 x 224 x 224 fp32 image).
    """
    if x.device.type != "cpu" or dtype not in _NUMPY_DTYPES:
        return x.new_empty(shape, dtype=dtype)
    out = torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))
    return out.view(dtype) if dtype == torch.bfloat16 else out


def write(out: torch.Tensor | None, result: torch.Tensor) -> torch.Tensor:
    """``result`` copied into ``out`` (returned), or ``result`` itself when ``out`` is None."""
    if out is None:
        return result
    return out.copy_(result)


def upcast(x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """``x`` in float32 (FFT work is always fp32) and the dtype to return the result in."""
    return x.float(), x.dtype
