"""The embedded demo corpus: deterministic, realistic multi-patient EDF+ recordings with annotations.

Each patient gets one recording of ``minutes`` minutes with 19 scalp electrodes (naming styles vary
between patients: ``EEG Fp1-REF``, ``Fp1``, old ``T3``/``T5`` names) and an ECG channel, at 200, 256
or 500 Hz, with 50 or 60 Hz line noise. The signal is built from:

- a spatially smooth 1/f background, posterior alpha in wakefulness;
- sleep-like stages in 30 s blocks (W, N1, N2 with spindles and K-complexes, N3 slow waves, REM),
  each annotated (German "Schlafstadium N2" or English "Sleep stage 2");
- focal interictal spikes (sharp wave + slow wave) at the patient's focus, near background
  amplitude (peaks of about 2 background standard deviations);
- seizure-like rhythmic discharges that start focally with an attenuation of the background,
  then build up at 6-8 Hz, spread and slow to ~3 Hz, reaching 1.5-2.5 times the background's
  amplitude (not a high-amplitude event any projection separates), about a quarter of the
  recording, with onset/offset annotations ("Anfallsbeginn"/"Anfallsende" or "seizure onset"/
  "seizure end");
- artefacts: muscle bursts, rhythmic chewing, eye blinks, movement, electrode pops (some annotated),
  larger than the seizures, as in clinical recordings; one patient in six has an electrode that
  goes flat, another an amplifier that clips large transients.

Files are cached under ``${EFM_CACHE:-~/.cache/efm}/demo/<version>-p<P>-m<M>-s<seed>/`` and generated into a
temporary folder that is renamed when complete. The same arguments give the same bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from efm.data.edf import write_edf
from efm.data.montage import STANDARD_1020, positions_1020

log = logging.getLogger("efm.data.demo")
VERSION = "v3"
RATES = (256.0, 500.0, 200.0)
OLD = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
FOCI = (("T7", "P7", "F7"), ("T8", "P8", "F8"), ("F3", "Fp1", "C3"), ("F4", "Fp2", "C4"))
STAGES = ("W", "W", "N1", "N2", "N2", "N3", "N3", "N2", "R", "W")  # cycled in 30 s blocks
TEXT = {
    "de": {
        "W": "Schlafstadium W",
        "N1": "Schlafstadium N1",
        "N2": "Schlafstadium N2",
        "N3": "Schlafstadium N3",
        "R": "Schlafstadium REM",
        "on": "Anfallsbeginn",
        "off": "Anfallsende",
        "spike": "Spitze",
        "muscle": "Muskelartefakt",
        "blink": "Lidschläge",
        "move": "Bewegungsartefakt",
        "start": "Aufnahmebeginn",
    },
    "en": {
        "W": "Sleep stage W",
        "N1": "Sleep stage 1",
        "N2": "Sleep stage 2",
        "N3": "Sleep stage 3",
        "R": "Sleep stage R",
        "on": "seizure onset",
        "off": "seizure end",
        "spike": "spike",
        "muscle": "muscle artifact",
        "blink": "eye blinks",
        "move": "movement artifact",
        "start": "recording start",
    },
}


def corpus_dir(patients: int, minutes: float, seed: int) -> Path:
    from efm.data.paths import cache_dir

    return cache_dir() / "demo" / f"{VERSION}-p{patients}-m{minutes:g}-s{seed}"


def ensure_corpus(patients: int = 6, minutes: float = 10.0, seed: int = 0) -> Path:
    """The demo corpus folder, generated on first use."""
    final = corpus_dir(patients, minutes, seed)
    if (final / "COMPLETE").is_file():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in range(patients):
        generate_recording(tmp, p, minutes, seed)
    (tmp / "COMPLETE").write_text(f"{patients} patients x {minutes:g} min, seed {seed}\n")
    if final.exists():  # an incomplete earlier attempt
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated the demo corpus: %d patients x %g min in %s", patients, minutes, final)
    return final


def _pink(rng: np.random.Generator, n_chans: int, n: int, sfreq: float) -> np.ndarray:
    """1/f noise ``[C, n]``, unit variance, spatially mixed by electrode distance."""
    spec = np.fft.rfft(rng.standard_normal((n_chans, n)), axis=1)  # [C, F]
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec *= 1 / np.sqrt(np.maximum(f, 0.5))
    x = np.fft.irfft(spec, n, axis=1)
    pos = np.stack([positions_1020()[c] for c in STANDARD_1020])  # [19, 3]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mix = np.exp(-((d / 0.05) ** 2))
    x = (mix / mix.sum(1, keepdims=True)) @ x
    return x / x.std(axis=1, keepdims=True)


def _osc(t: np.ndarray, f: float | np.ndarray, phase: float = 0.0) -> np.ndarray:
    return np.sin(2 * np.pi * np.cumsum(np.broadcast_to(f, t.shape)) * (t[1] - t[0]) + phase)


def generate_recording(folder: Path, patient: int, minutes: float, seed: int) -> Path:
    """Write ``patient-XX/patient-XX_rec-01.edf`` under ``folder``; return its path."""
    rng = np.random.default_rng([seed, patient])
    sfreq = RATES[patient % len(RATES)]
    lang = "de" if patient % 2 == 0 else "en"
    line = 60.0 if patient % 3 == 2 else 50.0
    n = int(minutes * 60 * sfreq)
    t = np.arange(n) / sfreq
    idx = {c: i for i, c in enumerate(STANDARD_1020)}
    x = _pink(rng, 19, n, sfreq) * 22.0  # [19, n] µV
    anns: list[tuple[float, float, str]] = [(0.0, 0.0, TEXT[lang]["start"])]
    # sleep-like stages in 30 s blocks
    n_blocks = int(np.ceil(n / (30 * sfreq)))
    offset = int(rng.integers(len(STAGES)))
    block_stage = [STAGES[(offset + b) % len(STAGES)] for b in range(n_blocks)]
    stage_t = np.array([block_stage[min(int(s // 30), n_blocks - 1)] for s in t[:: int(sfreq)]])
    per_sample = np.repeat(stage_t, int(sfreq))[:n]
    post = [idx[c] for c in ("O1", "O2", "P3", "P4", "Pz")]
    cent = np.array([idx[c] for c in ("C3", "C4", "Cz", "Fz", "Pz")])
    alpha = (per_sample == "W") * 18.0 * _osc(t, 9.5 + rng.normal(0, 0.5))
    x[post] += alpha * (1 + 0.3 * rng.standard_normal((len(post), 1)))
    x += (per_sample == "N1") * 10.0 * _osc(t, 5.5)
    delta = (per_sample == "N3") * 60.0 * _osc(t, 1.0 + 0.3 * np.sin(2 * np.pi * t / 17))
    x += delta * np.linspace(1.2, 0.7, 19)[:, None]
    for b, st in enumerate(block_stage):
        anns.append((30.0 * b, 30.0, TEXT[lang][st]))
        if st != "N2":
            continue
        for c in rng.uniform(30 * b, 30 * b + 29, size=4):  # spindles and K-complexes
            seg = (t >= c) & (t < c + 1.0)
            env = np.hanning(seg.sum())
            x[np.ix_(cent, seg)] += 25.0 * env * np.sin(2 * np.pi * 13.0 * (t[seg] - c))
        k = (t >= 30 * b + 10) & (t < 30 * b + 11)
        x[np.ix_(cent, k)] -= 80.0 * np.sin(np.pi * (t[k] - t[k][0]))
    # seizures: about a quarter of the recording, rhythmic, evolving, spreading
    focus = np.array([idx[c] for c in FOCI[patient % len(FOCI)]])
    dur_total = 0.2 * minutes * 60
    n_sz = max(1, int(round(dur_total / 75)))
    slots = np.sort(rng.choice(np.arange(1, max(2, int(minutes * 60 // 100))), n_sz, replace=False))
    for s in slots:
        on = float(s * 100 + rng.uniform(0, 10))
        d = float(np.clip(dur_total / n_sz * rng.uniform(0.85, 1.15), 40, 95))
        if on + d > minutes * 60 - 5:
            continue
        seg = (t >= on) & (t < on + d)
        u = (t[seg] - on) / d  # 0..1 through the seizure
        freq = (6.0 + rng.uniform(0, 2)) - 4.0 * u  # evolving: ~7 Hz slowing to ~3 Hz
        wave = _osc(t[seg], freq, float(rng.uniform(0, 2 * np.pi)))
        wave = wave + 0.35 * np.sign(wave) * np.abs(wave) ** 4  # sharpened rhythmic discharge
        build = np.clip((u * d - 3.0) / 8.0, 0, 1)  # after ~3 s of attenuation, ~8 s build-up
        amp = 22.0 * rng.uniform(1.5, 2.5) * build * (1 - 0.3 * u)
        spread = np.clip((u[None] * d - rng.uniform(0, 20, (19, 1))) / 8, 0, 1)  # [19, m]
        spread[focus] = 1.0
        # onset: the focus's background attenuates (electrodecrement), then recovers
        x[np.ix_(focus, np.flatnonzero(seg))] *= 1 - 0.6 * np.exp(-u * d / 4.0)
        x[:, seg] += amp * wave * spread * (0.8 + 0.4 * rng.random((19, 1)))
        late = u > 0.6  # some muscle as the seizure ends
        x[np.ix_(np.arange(19), np.flatnonzero(seg)[late])] += 6.0 * rng.standard_normal(
            (19, int(late.sum()))
        )
        anns += [(round(on, 3), 0.0, TEXT[lang]["on"]), (round(on + d, 3), 0.0, TEXT[lang]["off"])]
    # interictal spikes at the focus
    n_sp = rng.poisson(6 * minutes)
    for j, c in enumerate(rng.uniform(1, minutes * 60 - 1, n_sp)):
        seg = (t >= c) & (t < c + 0.35)
        tt = t[seg] - c
        shape = -50 * np.exp(-(((tt - 0.03) / 0.015) ** 2)) + 18 * np.exp(
            -(((tt - 0.15) / 0.06) ** 2)
        )
        x[np.ix_(focus, seg)] += shape * rng.uniform(0.6, 1.2)
        if j % 3 == 0:
            anns.append((round(c, 3), 0.0, TEXT[lang]["spike"]))
    # artefacts
    for j, c in enumerate(rng.uniform(5, minutes * 60 - 6, int(4 * minutes))):
        kind = ("muscle", "blink", "move", "pop", "chew")[j % 5]
        seg = (t >= c) & (t < c + rng.uniform(1, 4))
        m = seg.sum()
        if kind == "muscle":
            tmp = np.array([idx[ch] for ch in ("T7", "T8", "F7", "F8", "P7", "P8")])
            x[np.ix_(tmp, seg)] += 40 * rng.standard_normal((len(tmp), m))
        elif kind == "chew":  # rhythmic muscle bursts at ~1.5 Hz on the temporal electrodes
            tmp = np.array([idx[ch] for ch in ("T7", "T8", "F7", "F8")])
            bursts = (np.sin(2 * np.pi * 1.5 * (t[seg] - c)) > 0.3).astype(float)
            x[np.ix_(tmp, seg)] += 45 * bursts * rng.standard_normal((len(tmp), m))
        elif kind == "blink":
            fr = np.array([idx["Fp1"], idx["Fp2"], idx["F3"], idx["F4"]])
            x[np.ix_(fr, seg)] += (
                150
                * np.sin(np.pi * np.linspace(0, 1, m)) ** 2
                * np.array([[1.0], [1.0], [0.4], [0.4]])
            )
        elif kind == "move":
            x[:, seg] += (
                250 * np.sin(np.pi * np.linspace(0, 1, m))[None] * rng.uniform(0.5, 1, (19, 1))
            )
        else:
            ch = int(rng.integers(19))
            x[ch, seg] += 300 * np.exp(-np.arange(m) / (0.1 * sfreq))
        if kind not in ("pop", "chew") and j % 2 == 0:
            anns.append((round(c, 3), round(m / sfreq, 3), TEXT[lang][kind]))
    x += 4.0 * np.sin(2 * np.pi * line * t)  # line noise
    if patient % 6 == 3:  # a disconnected electrode: flat after the first minute
        x[idx["T8"], int(60 * sfreq) :] = 0.0
    if patient % 6 == 4:  # a low-range amplifier: large transients saturate (clipping)
        np.clip(x, -350.0, 350.0, out=x)
    ecg = 600 * np.exp(-(((((t * 1.15) % 1.0) - 0.5) / 0.015) ** 2)) + 10 * rng.standard_normal(n)
    style = patient % 3
    names = [
        ("EEG " + c + "-REF") if style == 0 else OLD.get(c, c) if style == 1 else c
        for c in STANDARD_1020
    ]
    pid = f"patient-{patient:02d}"
    return write_edf(
        folder / pid / f"{pid}_rec-01.edf",
        np.vstack([x, ecg[None]]),
        sfreq,
        [*names, "ECG EKG"],
        anns,
        patient=f"{pid} X X X",
    )
