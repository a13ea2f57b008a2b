"""The demo corpus and the EDF+ writer, read back through MNE."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from efm import registry
from efm.data import demo, taxonomy
from efm.data.edf import write_edf


def test_edf_writer_round_trip(tmp_path: Path) -> None:
    import mne

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 256 * 12)) * 40.0
    anns = [(0.0, 0.0, "Aufnahmebeginn"), (2.5, 4.0, "Anfallsbeginn"), (7.25, 0.0, "Lidschläge")]
    path = write_edf(tmp_path / "a.edf", x, 256.0, ["EEG Fp1-REF", "T3", "ECG EKG"], anns)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == ["EEG Fp1-REF", "T3", "ECG EKG"] and raw.info["sfreq"] == 256.0
    np.testing.assert_allclose(raw.get_data() * 1e6, x, atol=0.051)  # 16-bit step 0.1 µV
    got = [(a["onset"], a["duration"], a["description"]) for a in raw.annotations]
    assert got == anns


def test_corpus_is_deterministic_and_cached(small_corpus: Path, efm_cache: Path) -> None:
    files = sorted(small_corpus.glob("*/*.edf"))
    assert [f.parent.name for f in files] == ["patient-00", "patient-01", "patient-02"]
    again = demo.generate_recording(efm_cache / "again", 1, 5.5, 0)
    assert (
        hashlib.sha256(again.read_bytes()).digest()
        == hashlib.sha256(files[1].read_bytes()).digest()
    )
    assert demo.ensure_corpus(3, 5.5, 0) == small_corpus  # cached, not regenerated


def test_corpus_content(small_corpus: Path) -> None:
    reader = registry.create("readers", "mne")
    tax = taxonomy.load()
    langs, rates, seizure = set(), set(), []
    for f in sorted(small_corpus.glob("*/*.edf")):
        rec = reader.read(f)
        rates.add(rec.sfreq)
        texts = [a.description for a in rec.annotations]
        langs.add("de" if "Anfallsbeginn" in texts else "en" if "seizure onset" in texts else "?")
        labels = taxonomy.epoch_labels(rec.annotations, tax, int(rec.duration // 30), 30.0, 10.0)
        seizure += [lab["seizure"] for lab in labels]
        assert {lab.get("sleep_stage", -1) for lab in labels} >= {0, 2}
        assert any(lab["interictal"] for lab in labels) and any(lab["artefact"] for lab in labels)
    assert langs == {"de", "en"} and len(rates) == 3
    assert 0.15 <= np.mean(seizure) <= 0.35


def test_demo_events_are_realistic_in_amplitude_and_morphology(tmp_path: Path) -> None:
    """Seizures 1.5-3.5x the background and slowing; spikes near it; artefacts larger."""
    from scipy.signal import butter, sosfiltfilt, welch

    rec = registry.create("readers", "mne").read(demo.generate_recording(tmp_path, 0, 6.0, 0))
    sf, x = rec.sfreq, rec.data[:19] * 1e6  # [19, T] µV
    idx = {c: i for i, c in enumerate(demo.STANDARD_1020)}
    focus = [idx[c] for c in demo.FOCI[0]]
    y = sosfiltfilt(butter(4, [1, 30], btype="band", fs=sf, output="sos"), x, axis=1)
    ann = [(a.onset, a.duration, a.description) for a in rec.annotations]
    onsets = [o for o, _, d in ann if d == "Anfallsbeginn"]
    ends = [o for o, _, d in ann if d == "Anfallsende"]
    assert onsets and len(onsets) == len(ends)
    ictal = np.zeros(x.shape[1], bool)
    for a, b in zip(onsets, ends):
        ictal[int(a * sf) : int(b * sf)] = True
    background = y[focus][:, ~ictal].std()
    established = np.zeros_like(ictal)
    for a, b in zip(onsets, ends):
        established[int((a + 15) * sf) : int(b * sf)] = True
    ratio = y[focus][:, established].std() / background
    assert 1.5 < ratio < 3.5, ratio  # a discharge, not a high-amplitude event
    # evolving: the dominant frequency at the focus slows from the early to the late seizure
    a, b = onsets[0], ends[0]
    third = (b - a) / 3

    def peak(t0: float) -> float:
        seg = x[focus[0], int(t0 * sf) : int((t0 + third) * sf)]
        f, p = welch(seg, sf, nperseg=int(4 * sf))
        band = (f >= 2) & (f <= 12)
        return float(f[band][np.argmax(p[band])])

    assert peak(a + 8) > peak(b - third) + 1.5
    # interictal spikes near background amplitude: trough 1.5-4 background SDs
    spikes = [o for o, _, d in ann if d == "Spitze"]
    troughs = [-y[focus[0], int(s * sf) : int((s + 0.1) * sf)].min() for s in spikes]
    assert spikes and 1.5 < np.median(troughs) / background < 4.0
    # annotated movement artefacts are larger than any seizure
    moves = [(o, d) for o, d, t in ann if t == "Bewegungsartefakt"]
    assert moves
    move_peak = max(np.abs(x[:, int(o * sf) : int((o + d) * sf)]).max() for o, d in moves)
    assert move_peak > np.abs(x[:, ictal]).max()
