"""Conditioning throughput of efm.data against a plain MNE script, on one core.

    python benchmarks/conditioning.py                 # 1 h recordings at 256 and 500 Hz
    python benchmarks/conditioning.py --hours 0.25 --rates 500 --repeats 1 --out /tmp/x.json

Each case is a 19-channel recording (1/f background, alpha, 50 Hz line noise) of clinical length,
in memory. Timed, per case (minimum of ``--repeats`` runs after one warm-up):

``efm.condition``
    :func:`efm.data.conditioning.condition`: line-noise detection, MNE polyphase resampling to
    250 Hz, MNE-designed bandpass 0.5-100 Hz + notch in one pass.
``efm.stages_3_9``
    :func:`efm.data.pipeline.process_recording` without sleep staging: channel standardisation,
    conditioning, quality score, labels, 19 -> 8 regions, float16 epochs (no disk I/O).
``efm.file``
    The same from an EDF+ file on disk: sha256, the ``mne`` reader, stages 3-9 and the shard write.
``mne.baseline``
    What a plain MNE script does: ``RawArray``, ``notch_filter(50)``, ``filter(0.5, 100)``,
    ``resample(250)`` (MNE defaults, ``n_jobs=1``).

Throughput is reported as hours of EEG per minute per core and as a multiple of real time.
Threads are pinned to one (``OMP_NUM_THREADS`` etc. are set before NumPy is imported).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def make_recording(hours: float, sfreq: float, seed: int = 0):
    """A 19-channel recording in volts with the 10-20 names a clinical EDF export uses."""
    from efm.data.montage import STANDARD_1020
    from efm.interfaces import Recording

    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * sfreq)
    spec = np.fft.rfft(rng.standard_normal((19, n)).astype(np.float32), axis=1)
    spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / sfreq), 0.5)).astype(np.float32)
    x = np.fft.irfft(spec, n, axis=1)
    x *= 20e-6 / x.std(axis=1, keepdims=True)
    t = np.arange(n, dtype=np.float32) / sfreq
    x += 10e-6 * np.sin(2 * np.pi * 10 * t) + 3e-6 * np.sin(2 * np.pi * 50 * t)
    names = [f"EEG {c}-REF" for c in STANDARD_1020]
    return Recording(
        x.astype(np.float32),
        sfreq,
        names,
        ["eeg"] * 19,
        patient_id="b",
        recording_id="bench",
        source="memory",
    )


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (filter design caches, imports)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_rate(sfreq: float, hours_in: float, repeats: int, pipe: dict) -> list[dict]:
    """Every case on one recording at ``sfreq``."""
    import mne

    from efm.data import conditioning, edf, pipeline

    rec = make_recording(hours_in, sfreq)
    hours = rec.duration / 3600
    results = []
    cases = {
        "efm.condition": lambda: conditioning.condition(rec.data, sfreq, 250.0, 0.5, 100.0, None),
        "efm.stages_3_9": lambda: pipeline.process_recording(rec, pipe),
    }

    def baseline() -> None:
        info = mne.create_info(rec.ch_names, sfreq, "eeg")
        raw = mne.io.RawArray(rec.data.astype(np.float64), info, verbose="error")
        raw.notch_filter(50.0, n_jobs=1, verbose="error")
        raw.filter(0.5, 100.0, n_jobs=1, verbose="error")
        raw.resample(250.0, n_jobs=1, verbose="error")

    cases["mne.baseline"] = baseline
    with tempfile.TemporaryDirectory() as tmp:
        if float(sfreq).is_integer():
            src = edf.write_edf(
                Path(tmp) / "rec.edf",
                rec.data * 1e6,
                sfreq,
                rec.ch_names,
                [(0.0, 0.0, "Aufnahmebeginn")],
            )
            task = {
                "path": str(src),
                "rel": "rec.edf",
                "file_index": 0,
                "out": tmp,
                "done": set(),
                "reader": "mne",
                "reader_cfg": {},
                "pipeline": pipe,
                "patient_regex": r"^[^_.]+",
            }
            cases["efm.file"] = lambda: pipeline.process_file(task)
        for name, fn in cases.items():
            sec = timed(fn, repeats)
            row = {
                "case": name,
                "sfreq": sfreq,
                "n_chans": 19,
                "hours": round(hours, 4),
                "seconds": round(sec, 4),
                "x_realtime": round(hours * 3600 / sec, 1),
                "hours_per_min_per_core": round(hours / sec * 60, 2),
            }
            results.append(row)
            print(
                f"{name:<16} {sfreq:>5.0f} Hz  {sec:7.3f} s  {row['x_realtime']:>8.1f}x "
                f"real time  {row['hours_per_min_per_core']:>7.2f} h/min/core",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--rates", type=float, nargs="+", default=[256.0, 500.0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "conditioning.json"))
    args = p.parse_args(argv)

    import mne
    import scipy

    import efm
    from efm.data.config import PipelineConfig

    mne.set_log_level("ERROR")
    pipe = vars(PipelineConfig(sleep_staging="none"))
    results = []
    for sfreq in args.rates:
        results += bench_rate(sfreq, args.hours, args.repeats, pipe)
    for sfreq in args.rates:
        base = next(r for r in results if r["case"] == "mne.baseline" and r["sfreq"] == sfreq)
        for r in results:
            if r["sfreq"] == sfreq:
                r["speedup_vs_mne"] = round(base["seconds"] / r["seconds"], 2)
    doc = {
        "benchmark": "conditioning",
        "description": "19-channel recordings, one core, minimum of repeats after a warm-up",
        "repeats": args.repeats,
        "threads": 1,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "versions": {
            "efm": efm.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "mne": mne.__version__,
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
