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
