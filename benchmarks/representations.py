"""Benchmark the image representations against vectorised SciPy/NumPy, MNE, mne-connectivity and
flash-eeg 0.4.1, side by side, on batches of 8 x 7500 (30 s at 250 Hz), on the CPU or a GPU.

    python benchmarks/representations.py                  # batches 64, 256, 2048, 1 thread
    python benchmarks/representations.py --quick          # batch 16, one repeat
    python benchmarks/representations.py --batches 2048 --merge   # add rows to the results JSON
    python benchmarks/representations.py --threads 2 --out benchmarks/results/x.json
    python benchmarks/representations.py --device cuda --compile  # GPU: eager and compiled
    bash benchmarks/device_run.sh reps compiled           # the GPU run on a bare device machine

Every implementation runs with the same thread settings: ``--threads`` sets OMP/MKL/OpenBLAS
thread counts (before NumPy is imported), ``torch.set_num_threads`` and SciPy's FFT workers;
MNE / mne-connectivity run with ``n_jobs=1``. Baselines that are too slow or too memory-hungry
for a batch are run on fewer epochs (their cap) and reported per epoch with ``extrapolated:
true``; efm's transforms always run the full batch. Timings: one first call (with ``--compile``
it compiles; its time is recorded as ``first_call_s``), then the median (and min) of
``--repeats`` rounds (default 3, one at batch >= 1024 on the CPU); in each round efm and every baseline of
a transform run once, one after the other, so they share the machine's load (the host is
shared). GPU calls are synchronised. Construction (flash-eeg's DPSS eigen-solve included) is
not timed. On a GPU the baselines are flash-eeg eager and compiled (SciPy and MNE are in the CPU
results); an out-of-memory baseline is recorded as ``oom: true``.

GB/s counts the fp32 input and output bytes once; ``x_of_bound`` divides the time by those
bytes over the device's measured copy bandwidth (``copy_bandwidth_GB_per_s``, bytes read plus
written), the memory-bandwidth bound. For efm on the CPU the peak resident memory of one cold
call at the same batch is measured in a fresh process (``VmHWM`` after resetting it through
``/proc/self/clear_refs``): ``peak_rss_gb`` is the process peak, ``call_gb`` the growth during
the call (output included), ``working_gb`` that growth minus the output; on a GPU
``peak_gpu_gb`` is ``torch.cuda.max_memory_allocated``. The 1-minute load average is recorded
next to every timing.
"""

from __future__ import annotations

import os
import sys


def _threads_arg(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


if __name__ == "__main__":  # thread env before NumPy / torch load their runtimes
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(_threads_arg(sys.argv[1:]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.fft  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("efm.benchmarks.representations")
SFREQ, C, T = 250.0, 8, 7500
BANDS = [(1, 4), (4, 8), (8, 13), (13, 30), (30, 60), (60, 100), (1, 40), (1, 100)]
# timed rows that are not a registered tokenizer with its defaults: row name -> (name, config)
CONFIGS = {"wpli_flash_compat": ("wpli", {"flash_compat": True})}


def _component(row: str) -> tuple[str, dict]:
    """The registered tokenizer and config a timed row runs."""
    return CONFIGS.get(row, (row, {}))


# --- vectorised SciPy / NumPy baselines (same outputs as the torch modules) ----------------------
def _lerp_axis(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear resize of one axis as torch's ``align_corners=False`` (source index clamped at 0)."""
    n = a.shape[axis]
    if n == size:
        return a
    src = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (src - i0).astype(a.dtype).reshape([-1 if d == axis % a.ndim else 1 for d in range(a.ndim)])
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w


def np_resize(img: np.ndarray, size: int = 224) -> np.ndarray:
    """Bilinear resize of the last two axes (torch ``F.interpolate`` semantics)."""
    return _lerp_axis(_lerp_axis(img, size, -2), size, -1)


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
    return np_resize(img)


def scipy_morlet(x: np.ndarray, rep) -> np.ndarray:
    """flash-eeg's algorithm in SciPy: analytic signal per wavelet by a full-length inverse FFT."""
    w = rep.wavelets(x.shape[-1]).numpy().astype(np.complex64)  # [n_freqs, n_rfft]
    spec = scipy.fft.rfft(x, axis=-1)[:, :, None, :] * w  # [n, C, n_freqs, n_rfft]
    z = scipy.fft.ifft(spec, n=x.shape[-1], axis=-1)[..., :: rep.decim]
    p = 10 * np.log10(z.real**2 + z.imag**2 + 1e-10)
    p = (p - p.min((2, 3), keepdims=True)) / (np.ptp(p, (2, 3), keepdims=True) + 1e-8)
    return np_resize(p)


def scipy_wpli(x: np.ndarray, rep) -> np.ndarray:
    """Whole-epoch multitaper WPLI in NumPy/SciPy: ``[n, n_bands, C, C]`` raw values."""
    tapers, n, k0, k1, mean_t = (v.numpy() if hasattr(v, "numpy") else v for v in rep.plan(T))
    spec = scipy.fft.rfft(x[:, :, None, :] * tapers, n=n, axis=-1)[..., k0:k1]  # [n, C, K, F]
    im = np.einsum("bikf,bjkf->bijf", spec, spec.conj()).imag  # [n, C, C, F], summed over K
    num = np.abs(im @ mean_t)  # mean_t [F, bands] already holds 1 / K
    den = np.abs(im) @ mean_t
    return np.moveaxis(num / (den + 1e-10), -1, 1)


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
        n_jobs=1,
        verbose=False,
    )
    return con.get_data()


# --- harness -------------------------------------------------------------------------------------
def _time_rounds(fns: list, rounds: int) -> list[tuple[float, float]]:
    """(median, min) seconds of each function over ``rounds`` interleaved rounds (the caller
    has run each once): every round runs each function once, so all of them see the same
    machine load (the benchmark host is shared)."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            runs[i].append(time.perf_counter() - t0)
    return [(statistics.median(r), min(r)) for r in runs]


_PEAK_CODE = """
import json, sys, torch
from pathlib import Path
from efm import registry

def status_gb(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1e6

name, cfg, b, c, t, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
rep = registry.create("tokenizers", name, **cfg)
x = torch.randn(b, c, t) * 30.0
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
before = status_gb("VmRSS")
with torch.no_grad():
    out = rep(x)
print(json.dumps({"before": before, "peak": status_gb("VmHWM")}))
"""


def _peak_gb(name: str, cfg: dict, b: int, threads: int) -> tuple[float, float]:
    """(RSS before, peak RSS during) one cold call in a fresh process, in GB (Linux only):
    a fresh process has no freed-but-resident heap that would hide the call's allocations."""
    import subprocess

    arg = json.dumps([name, cfg, b, C, T, threads])
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_CODE, arg],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
        return got["before"], got["peak"]
    except (subprocess.SubprocessError, OSError, ValueError, KeyError) as err:
        log.warning("peak memory of %s at batch %d not measured: %s", name, b, err)
        return float("nan"), float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device) -> float:
    """Measured memory bandwidth (GB/s, bytes read plus written) of a plain device copy:
    1 GiB on a GPU, 256 MiB on the CPU (best of 5, after a warm-up). The bound of a transform
    is its fp32 input and output bytes over this bandwidth."""
    n = (1 << 28) if device.type == "cuda" else (1 << 26)
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for i in range(6):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return 2 * 4 * n / 1e9 / best


def build(flash: bool, device: torch.device, compile_mode: str | None):
    """efm's transforms and their baselines: ``{name: [(impl, mode, fn(x_torch, x_numpy), cap)]}``
    with ``impl`` efm / scipy / mne / mne-connectivity / flash-eeg and ``mode`` eager or compiled.
    SciPy and MNE run on the CPU only; on a GPU the baselines are flash-eeg, eager and compiled
    (its own ``compile=True``: ``torch.compile(mode="max-autotune")``)."""
    from efm import registry

    def make(name: str):
        registered, cfg = _component(name)
        return registry.create("tokenizers", registered, **cfg).to(device)

    names = ["spectrogram", "morlet", "wpli", "wpli_flash_compat", "temporal_matrix", "bandpass"]
    ours = {k: make(k) for k in names}
    rows: dict[str, list] = {
        k: [("efm", "eager", lambda xt, xn, m=ours[k]: m(xt), None)] for k in names
    }
    if compile_mode is not None:
        for k in names:
            comp = torch.compile(ours[k], fullgraph=True, dynamic=False, mode=compile_mode)
            rows[k].append(("efm", "compiled", lambda xt, xn, m=comp: m(xt), None))
    if device.type == "cpu":
        raw_wpli = registry.create("tokenizers", "wpli", output="raw")
        # (label, mode, fn(x_torch, x_numpy), cap on epochs)
        rows["spectrogram"].append(
            ("scipy", "eager", lambda xt, xn: scipy_spectrogram(xn, ours["spectrogram"]), 256)
        )
        rows["morlet"].append(
            ("scipy", "eager", lambda xt, xn: scipy_morlet(xn, ours["morlet"]), 16)
        )
        rows["morlet"].append(("mne", "eager", lambda xt, xn: mne_morlet(xn, ours["morlet"]), 8))
        rows["wpli"].append(("scipy", "eager", lambda xt, xn: scipy_wpli(xn, raw_wpli), 256))
        rows["wpli"].append(("mne-connectivity", "eager", lambda xt, xn: mnec_wpli(xn, None), 2))
        rows["temporal_matrix"].append(
            ("numpy", "eager", lambda xt, xn: numpy_temporal(xn, ours["temporal_matrix"]), 2048)
        )
        rows["bandpass"].append(
            ("scipy", "eager", lambda xt, xn: scipy_bandpass(xn, ours["bandpass"]), 2048)
        )
        rows["bandpass"].append(("mne", "eager", lambda xt, xn: mne_bandpass(xn, None), 64))
    if flash:
        import flash_eeg as fe
        import flash_eeg.transforms as fet

        from efm_plugins.tokenizers.wpli import dpss_tapers

        # flash-eeg solves the DPSS eigenproblem densely (minutes for 7500 samples on 2 cores);
        # construction is not timed, so use scipy's tridiagonal solver (same tapers up to sign,
        # which cancels in cross-spectra; tests/plugins/test_tokenizers_image.py checks equality).
        fet._dpss = lambda n, nw, k: dpss_tapers(n, nw, k).clone()
        # flash-eeg's Morlet holds [B, C, n_freqs, T] complex: about 1.7 GB at batch 16
        gpu = device.type == "cuda"
        caps = {
            "spectrogram": 2048 if gpu else 256,
            "morlet": 256 if gpu else 16,
            "wpli_flash_compat": 2048 if gpu else 256,
            "temporal_matrix": 2048,
            "bandpass": 2048,
        }
        modes = [("eager", False)] + ([("compiled", True)] if compile_mode is not None else [])
        for mode, comp in modes:
            t0 = time.perf_counter()
            dev = str(device)
            mods = {
                "spectrogram": fe.Spectrogram(device=dev, compile=comp),
                "morlet": fe.Morlet(device=dev, compile=comp),
                "wpli_flash_compat": fe.Connectivity(device=dev, compile=comp),
                "temporal_matrix": fe.Reshape(device=dev, compile=comp),
                "bandpass": fe.Bandpass(T, device=dev),
            }
            if comp:  # flash-eeg's Bandpass has no compile option: as its other modules do
                mods["bandpass"] = torch.compile(mods["bandpass"], mode="max-autotune")
            log.info("flash-eeg %s modules built in %.1f s", mode, time.perf_counter() - t0)
            for k, m in mods.items():
                rows[k].append(("flash-eeg", mode, lambda xt, xn, m=m: m(xt), caps[k]))
    return ours, rows


def run(
    batches: list[int],
    repeats: int | None,
    flash: bool,
    threads: int,
    baselines: bool = True,
    device: torch.device | None = None,
    compile_mode: str | None = None,
    transforms: list[str] | None = None,
    on_rows=None,
) -> tuple[list[dict], float]:
    """Time every transform and its baselines; returns the rows and the copy bandwidth (GB/s).
    ``on_rows(rows, bandwidth)`` is called after every transform (results written as they come,
    so a run stopped at a time limit keeps what it measured)."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    ours, rows = build(flash and baselines, device, compile_mode)
    if not baselines:
        rows = {k: [r for r in v if r[0] == "efm"] for k, v in rows.items()}
    if transforms:
        rows = {k: v for k, v in rows.items() if k in transforms}
    bandwidth = copy_bandwidth(device)
    log.info("device copy bandwidth: %.1f GB/s", bandwidth)
    results = []
    for b in batches:
        x = torch.randn(b, C, T, device=device) * 30.0
        rounds = repeats or (1 if b >= 1024 and device.type == "cpu" else 3)
        for name, impls in rows.items():
            rep = ours[name]
            load = os.getloadavg()[0]
            out_shape = (b, *rep.output_shape(C, T))
            out_gb = 4 * math.prod(out_shape) / 1e9
            in_gb = 4 * x.numel() / 1e9
            fns, inputs, live = [], [], []
            for label, mode, fn, cap in impls:
                n = b if cap is None else min(b, cap)
                xt = x[:n].contiguous()
                xn = None
                if device.type == "cpu":
                    xn = xt.double().numpy() if label.startswith("mne") else xt.numpy()

                def call(fn=fn, xt=xt, xn=xn):
                    fn(xt, xn)
                    _sync(device)

                t0 = time.perf_counter()
                try:
                    with torch.no_grad(), scipy.fft.set_workers(threads):
                        call()  # first call: compiles a compiled mode (timed apart)
                except ImportError as err:  # a baseline's package is not installed here
                    log.warning("%s %s: skipped (%s)", name, label, err)
                    continue
                except torch.OutOfMemoryError as err:
                    log.warning(
                        "%s %s %s at batch %d: out of memory (%s)", name, label, mode, n, err
                    )
                    results.append(_row(name, b, label, mode, n, oom=True))
                    continue
                first = time.perf_counter() - t0
                fns.append(call)
                inputs.append((label, mode, n, first))
            with torch.no_grad(), scipy.fft.set_workers(threads):
                timed = _time_rounds(fns, rounds)
            load = (load + os.getloadavg()[0]) / 2
            for (label, mode, n, first), (med, best) in zip(inputs, timed, strict=True):
                row = _row(name, b, label, mode, n, seconds=med / n * b, seconds_min=best / n * b)
                row["load_1min"] = load
                if mode == "compiled":
                    row["first_call_s"] = first  # compilation included
                if label == "efm":
                    gbytes = in_gb + out_gb
                    row["GB_per_s"] = gbytes / (med / n * b)
                    row["bound_ms_per_epoch"] = 1e3 * gbytes / bandwidth / b
                    row["x_of_bound"] = row["ms_per_epoch"] / row["bound_ms_per_epoch"]
                    row["output_gb"] = out_gb
                    if mode == "eager":
                        row.update(_peak(name, b, threads, device, rep, x))
                results.append(row)
                live.append(row)
            best_efm = min((r for r in live if r["impl"] == "efm"), key=lambda r: r["seconds"])
            for r in live:
                if r["impl"] != "efm":
                    r["speedup_of_efm"] = r["seconds"] / best_efm["seconds"]
                    r["speedup_of_efm_min"] = r["seconds_min"] / best_efm["seconds_min"]
                    r["efm_mode"] = best_efm["mode"]
                log.info("%s", r)
            if on_rows is not None:
                on_rows(results, bandwidth)
    return results, bandwidth


def _row(name: str, b: int, label: str, mode: str, n: int, oom: bool = False, **t) -> dict:
    row = {"transform": name, "batch": b, "impl": label, "mode": mode, "epochs_timed": n}
    if label != "efm":
        row["extrapolated"] = n < b
    if oom:
        row["oom"] = True
        return row
    row.update(t)
    row["ms_per_epoch"] = 1e3 * t["seconds"] / b
    row["ms_per_epoch_min"] = 1e3 * t["seconds_min"] / b
    return row


def _peak(name: str, b: int, threads: int, device: torch.device, rep, x) -> dict:
    """Peak memory of one efm call: resident memory of a cold call in a fresh process on the
    CPU, ``torch.cuda.max_memory_allocated`` on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            out = rep(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        out_gb = out.numel() * out.element_size() / 1e9
        del out
        return {
            "peak_gpu_gb": peak / 1e9,
            "call_gb": (peak - before) / 1e9,
            "working_gb": (peak - before) / 1e9 - out_gb,
        }
    before, peak = _peak_gb(*_component(name), b, threads)
    out_gb = 4 * math.prod((b, *rep.output_shape(C, T))) / 1e9
    return {"peak_rss_gb": peak, "call_gb": peak - before, "working_gb": peak - before - out_gb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256, 2048])
    ap.add_argument("--quick", action="store_true", help="batch 16, one repeat")
    ap.add_argument(
        "--repeats", type=int, help="timed rounds (default 3; 1 at batch >= 1024 on the CPU)"
    )
    ap.add_argument("--threads", type=int, default=1, help="threads for every implementation")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        metavar="MODE",
        help="also time torch.compile'd efm (fullgraph, this mode) and compiled flash-eeg",
    )
    ap.add_argument("--transforms", nargs="+", help="only these transforms")
    ap.add_argument("--no-flash", action="store_true", help="skip flash-eeg")
    ap.add_argument("--efm-only", action="store_true", help="skip every baseline")
    ap.add_argument("--out", help="default: benchmarks/results/representations_<device>.json")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep --out's rows of other transforms / batches / thread counts",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch")
    batches, repeats = ([16], 1) if args.quick else (args.batches, args.repeats)
    torch.set_num_threads(args.threads)
    flash = not args.no_flash
    try:
        import flash_eeg  # noqa: F401
    except ImportError:
        log.warning("flash-eeg is not installed (pip install flash-eeg==0.4.1): no flash-eeg rows")
        flash = False
    load_start = os.getloadavg()
    out = Path(args.out or f"benchmarks/results/representations_{device.type}.json")
    old = json.loads(out.read_text()) if args.merge and out.exists() else {}

    def write(results: list[dict], bandwidth: float) -> None:
        rows = [dict(r, threads=args.threads, device=device.type) for r in results]
        runs = list(old.get("runs", []))
        if old:  # replace the old rows of what this run measures
            names = set(args.transforms or []) or {r["transform"] for r in old.get("results", [])}
            redo = {(t, b, args.threads) for t in names for b in batches}
            rows = [
                r
                for r in old.get("results", [])
                if (r["transform"], r["batch"], r.get("threads")) not in redo
            ] + rows
        runs.append(
            {
                "batches": batches,
                "threads": args.threads,
                "repeats": repeats,
                "compile": args.compile,
                "copy_bandwidth_GB_per_s": bandwidth,
                "load_avg_start": load_start,
                "load_avg_end": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
        doc = {
            "benchmark": "representations",
            "device": device.type,
            "device_name": (
                torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
            ),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "shape_per_epoch": [C, T],
            "sfreq": SFREQ,
            "versions": _versions(),
            "dtype": "float32",
            "thread_env": "OMP/MKL/OPENBLAS_NUM_THREADS = torch threads = scipy.fft workers; "
            "MNE n_jobs=1",
            "timed": "median (min) over interleaved rounds after a first call (compilation, "
            "timed apart as first_call_s); 1 round at batch >= 1024 on the CPU; GPU calls "
            "synchronised",
            "bound": "x_of_bound = ms_per_epoch / (fp32 input + output bytes per epoch / "
            "measured copy bandwidth of the device)",
            "runs": runs,
            "results": sorted(rows, key=lambda r: (r.get("threads", 0), r["batch"])),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)

    results, bandwidth = run(
        batches,
        repeats,
        flash,
        args.threads,
        baselines=not args.efm_only,
        device=device,
        compile_mode=args.compile,
        transforms=args.transforms,
        on_rows=write,
    )
    write(results, bandwidth)
    print(f"wrote {out}")  # CLI output
    return 0


def _versions() -> dict:
    versions = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
    for mod in ("mne", "mne_connectivity", "flash_eeg", "triton"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return versions


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
