"""Benchmark the image representations against vectorised SciPy/NumPy, MNE, mne-connectivity and
flash-eeg 0.4.1, side by side, on batches of 8 x 7500 (30 s at 250 Hz).

    python benchmarks/representations.py                  # batches 64, 256, 2048
    python benchmarks/representations.py --quick          # batch 16, few repeats
    python benchmarks/representations.py --batches 64 --out benchmarks/results/x.json

Baselines that are too slow or too memory-hungry for a batch are run on fewer epochs (their cap)
and reported per epoch with ``extrapolated: true``; efm's transforms always run the full batch.
GB/s counts the bytes of the fp32 input plus the fp32 output once. Timings are the minimum of
``--repeats`` runs after one warm-up run; construction (flash-eeg's DPSS eigen-solve included) is
not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import resource
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.fft
import scipy.ndimage
import scipy.signal
import torch

log = logging.getLogger("efm.benchmarks.representations")
SFREQ, C, T = 250.0, 8, 7500
BANDS = [(1, 4), (4, 8), (8, 13), (13, 30), (30, 60), (60, 100), (1, 40), (1, 100)]


# --- vectorised SciPy / NumPy baselines (same outputs as the torch modules) ----------------------
def scipy_spectrogram(x: np.ndarray, rep) -> np.ndarray:
    win = scipy.signal.get_window("hann", 1024)
    _, _, z = scipy.signal.stft(
        x, window=win, nperseg=1024, noverlap=1024 - 128, boundary="even", padded=False
    )
    z = z[:, :, rep.bin_min : rep.bin_max + 1] * win.sum()
    spec = 10 * np.log10(z.real**2 + z.imag**2 + 1e-10)
    lo, hi, frac = (rep.idx_lo.numpy(), rep.idx_hi.numpy(), rep.frac.numpy()[:, None])
    img = spec[:, :, lo] * (1 - frac) + spec[:, :, hi] * frac
    img = (img - img.min((2, 3), keepdims=True)) / (np.ptp(img, (2, 3), keepdims=True) + 1e-8)
    return scipy.ndimage.zoom(img, (1, 1, 224 / img.shape[2], 224 / img.shape[3]), order=1)


def scipy_bandpass(x: np.ndarray, rep) -> np.ndarray:
    gain = rep.response(x.shape[-1]).numpy()
    return scipy.fft.irfft(scipy.fft.rfft(x, axis=-1) * gain, n=x.shape[-1], axis=-1)


def numpy_temporal(x: np.ndarray, rep) -> np.ndarray:
    side, rows, cols = rep.index(x.shape[-1])
    sq = x[..., : side * side].reshape(*x.shape[:2], side, side)
    sq = (sq - sq.min((2, 3), keepdims=True)) / (np.ptp(sq, (2, 3), keepdims=True) + 1e-8)
    return sq[:, :, rows.numpy()][:, :, :, cols.numpy()]


def mne_morlet(x: np.ndarray, rep) -> np.ndarray:
    import mne

    freqs = rep.freqs.double().numpy()
    p = mne.time_frequency.tfr_array_morlet(
        x,
        SFREQ,
        freqs,
        n_cycles=freqs / 2,
        output="power",
        decim=4,
        zero_mean=False,
        n_jobs=1,
        verbose=False,
    )
    return 10 * np.log10(p + 1e-10)


def mne_bandpass(x: np.ndarray, rep) -> np.ndarray:
    import mne

    return mne.filter.filter_data(
        x.reshape(-1, x.shape[-1]), SFREQ, 1.0, 50.0, n_jobs=1, verbose=False
    ).reshape(x.shape)


def mnec_wpli(x: np.ndarray, rep) -> np.ndarray:
    """mne-connectivity's per-epoch WPLI (multitaper TFR, WPLI over time, band-averaged)."""
    from mne_connectivity import spectral_connectivity_time

    freqs = np.arange(2.0, 100.0, 2.0)
    con = spectral_connectivity_time(
        x,
        freqs,
        method="wpli",
        sfreq=SFREQ,
        mode="multitaper",
        fmin=[b[0] + 1 for b in BANDS],
        fmax=[b[1] for b in BANDS],
        faverage=True,
        n_cycles=freqs / 2,
        verbose=False,
    )
    return con.get_data()


# --- harness -------------------------------------------------------------------------------------
def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def build(flash: bool):
    from efm import registry

    ours = {
        "spectrogram": registry.create("tokenizers", "spectrogram"),
        "morlet": registry.create("tokenizers", "morlet"),
        "wpli": registry.create("tokenizers", "wpli"),
        "wpli_flash_compat": registry.create("tokenizers", "wpli", flash_compat=True),
        "temporal_matrix": registry.create("tokenizers", "temporal_matrix"),
        "bandpass": registry.create("tokenizers", "bandpass"),
    }
    base: dict[str, list] = {k: [] for k in ours}
    # (label, fn(x_torch, x_numpy), cap on epochs)
    base["spectrogram"].append(
        ("scipy", lambda xt, xn: scipy_spectrogram(xn, ours["spectrogram"]), 256)
    )
    base["morlet"].append(("mne", lambda xt, xn: mne_morlet(xn, ours["morlet"]), 8))
    base["wpli"].append(("mne-connectivity", lambda xt, xn: mnec_wpli(xn, None), 2))
    base["temporal_matrix"].append(
        ("numpy", lambda xt, xn: numpy_temporal(xn, ours["temporal_matrix"]), 2048)
    )
    base["bandpass"].append(("scipy", lambda xt, xn: scipy_bandpass(xn, ours["bandpass"]), 2048))
    base["bandpass"].append(("mne", lambda xt, xn: mne_bandpass(xn, None), 64))
    if flash:
        import flash_eeg as fe
        import flash_eeg.transforms as fet

        from efm_plugins.tokenizers.wpli import dpss_tapers

        # flash-eeg solves the DPSS eigenproblem densely (minutes for 7500 samples on 2 cores);
        # construction is not timed, so use scipy's tridiagonal solver (same tapers up to sign,
        # which cancels in cross-spectra; tests/plugins/test_tokenizers_image.py checks equality).
        fet._dpss = lambda n, nw, k: dpss_tapers(n, nw, k).clone()
        t0 = time.perf_counter()
        mods = {
            "spectrogram": fe.Spectrogram(device="cpu", compile=False),
            "morlet": fe.Morlet(device="cpu", compile=False),
            "wpli_flash_compat": fe.Connectivity(device="cpu", compile=False),
            "temporal_matrix": fe.Reshape(device="cpu", compile=False),
            "bandpass": fe.Bandpass(T, device="cpu"),
        }
        log.info("flash-eeg modules built in %.1f s", time.perf_counter() - t0)
        caps = {
            "spectrogram": 256,
            "morlet": 16,
            "wpli_flash_compat": 256,
            "temporal_matrix": 2048,
            "bandpass": 2048,
        }
        for k, m in mods.items():
            base[k].append(("flash-eeg", lambda xt, xn, m=m: m(xt), caps[k]))
    return ours, base


def run(batches: list[int], repeats: int, flash: bool, baselines: bool = True) -> dict:
    torch.manual_seed(0)
    ours, base = build(flash)
    if not baselines:
        base = {k: [] for k in base}
    results = []
    for b in batches:
        x = torch.randn(b, C, T) * 30.0
        for name, rep in ours.items():
            with torch.no_grad():
                out_shape = (b, *rep.output_shape(C, T))
                secs = _time(lambda rep=rep, x=x: rep(x), 1 if b >= 1024 else repeats)
            nbytes = 4 * (x.numel() + math.prod(out_shape))
            row = {
                "transform": name,
                "batch": b,
                "impl": "efm",
                "epochs_timed": b,
                "seconds": secs,
                "ms_per_epoch": 1e3 * secs / b,
                "GB_per_s": nbytes / secs / 1e9,
                "peak_rss_gb_so_far": _peak_rss_gb(),
            }
            results.append(row)
            log.info("%s", row)
            for label, fn, cap in base[name]:
                n = min(b, cap)
                xt = x[:n].contiguous()
                xn = xt.double().numpy() if label in ("mne", "mne-connectivity") else xt.numpy()
                with torch.no_grad():
                    s = _time(
                        lambda fn=fn, xt=xt, xn=xn: fn(xt, xn),
                        1 if n >= 256 or label.startswith("mne") else repeats,
                    )
                per = s / n
                r = {
                    "transform": name,
                    "batch": b,
                    "impl": label,
                    "epochs_timed": n,
                    "extrapolated": n < b,
                    "seconds": per * b,
                    "ms_per_epoch": 1e3 * per,
                    "speedup_of_efm": per * b / secs,
                    "peak_rss_gb_so_far": _peak_rss_gb(),
                }
                results.append(r)
                log.info("%s", r)
    return {"results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256, 2048])
    ap.add_argument("--quick", action="store_true", help="batch 16, one repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-flash", action="store_true", help="skip flash-eeg")
    ap.add_argument("--efm-only", action="store_true", help="skip every baseline")
    ap.add_argument("--out", default="benchmarks/results/representations_cpu.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    batches, repeats = ([16], 1) if args.quick else (args.batches, args.repeats)
    flash = not args.no_flash
    try:
        import flash_eeg  # noqa: F401
    except ImportError:
        flash = False
    doc = run(batches, repeats, flash, baselines=not args.efm_only)
    import mne

    versions = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mne": mne.__version__,
        "python": platform.python_version(),
    }
    for mod in ("mne_connectivity", "flash_eeg"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    doc = {
        "benchmark": "representations",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "shape_per_epoch": [C, T],
        "sfreq": SFREQ,
        "batches": batches,
        "repeats": repeats,
        "versions": versions,
        "dtype": "float32",
        "timed": "min over repeats after one warm-up (1 run at batch >= 1024)",
        **doc,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")  # CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
