"""Synthetic shards in the shard contract, for tests and benchmarks of the training engine.

Written through :func:`efm.data.shards.write_samples`, so the samples are in exactly the format
``efm prepare`` writes (see :mod:`efm.data.shards`): tars ``shards/shard-XXXXXX.tar`` and a
``manifest.json``. Epochs labelled ``seizure=1`` carry a strong 3 Hz rhythm on
top of pink-ish background noise, so a probe on a trained (or even random) encoder can separate them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_synthetic_shards(
    out: str | Path,
    *,
    n_patients: int = 4,
    epochs_per_patient: int = 16,
    n_chans: int = 8,
    sfreq: float = 50.0,
    epoch_s: float = 4.0,
    epochs_per_shard: int = 24,
    seizure_every: int = 3,
    seed: int = 0,
) -> Path:
    """Write a small shard directory and return it.

    Parameters
    ----------
    out : path
        Directory to create (``out/manifest.json``, ``out/shards/*.tar``).
    n_patients, epochs_per_patient : int
        One recording per patient, cut into this many epochs.
    n_chans, sfreq, epoch_s : int, float, float
        Shape of every epoch: ``[n_chans, round(epoch_s * sfreq)]``.
    epochs_per_shard : int
        Shard size.
    seizure_every : int
        Every ``seizure_every``-th epoch is labelled ``seizure=1`` (0 disables).
    seed : int
        Random seed.
    """
    from efm.data.shards import write_samples

    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_times = round(epoch_s * sfreq)
    t = np.arange(n_times) / sfreq
    ch_names = [f"R{i}" for i in range(n_chans)]
    records = []
    for p in range(n_patients):
        for e in range(epochs_per_patient):
            noise = np.cumsum(rng.standard_normal((n_chans, n_times)), axis=1) * 2.0
            noise -= noise.mean(axis=1, keepdims=True)
            noise += rng.standard_normal((n_chans, n_times)) * 5.0
            seizure = int(seizure_every > 0 and e % seizure_every == 0)
            if seizure:
                phase = rng.uniform(0, 2 * np.pi, size=(n_chans, 1))
                noise += 60.0 * np.sin(2 * np.pi * 3.0 * t[None, :] + phase)
            meta = {
                "patient_id": f"P{p:02d}",
                "recording_id": f"P{p:02d}_R0",
                "epoch_index": e,
                "start_s": e * epoch_s,
                "sfreq": sfreq,
                "ch_names": ch_names,
                "ch_types": ["eeg"] * n_chans,
                "ch_pos": None,
                "modality": "eeg",
                "annotations": ["seizure"] if seizure else [],
                "labels": {"seizure": seizure, "events": ["seizure"] if seizure else []},
                "quality": {"score": 1.0},
            }
            records.append((f"P{p:02d}_R0_{e:05d}", noise.astype(np.float16), meta))
    shards = []
    for i in range(0, len(records), epochs_per_shard):
        rel = f"shards/shard-{i // epochs_per_shard:06d}.tar"
        chunk = records[i : i + epochs_per_shard]
        with open(out / rel, "wb") as fh:
            write_samples(fh, [{"__key__": k, "signal": sig, "meta": m} for k, sig, m in chunk])
        shards.append({"path": rel, "n_epochs": len(chunk)})
    manifest = {
        "shards": shards,
        "n_epochs": len(records),
        "n_chans": n_chans,
        "sfreq": sfreq,
        "epoch_s": epoch_s,
        "synthetic": True,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out
