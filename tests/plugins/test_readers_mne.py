"""The ``mne`` reader on every real recording in ../shared/data/real, checked against MNE itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from efm import registry
from efm.errors import ReaderError
from efm.testing.suites import ReaderSuite
from tests.conftest import real_data_dir

MNE_DIRS = ("mne-testing-data", "mne-misc-data", "eegmat")


def real_files() -> list[Path]:
    """Every recording file of the real-data folder that the mne reader claims (not Bonn .txt)."""
    from efm_plugins.readers.mne_reader import EXTENSIONS, suffix

    root = real_data_dir()
    out = []
    for d in MNE_DIRS:
        out += [p for p in sorted((root / d).iterdir()) if suffix(p) in EXTENSIONS]
    return out


class TestMneReader(ReaderSuite):
    names = ["mne"]

    def files(self, name: str) -> list[Path]:
        return real_files()


def test_values_and_annotations_equal_mne() -> None:
    import mne

    reader = registry.create("readers", "mne")
    files = real_files()
    assert len(files) >= 5 + 48
    for path in files:
        rec = reader.read(path)
        raw = mne.io.read_raw(path, preload=True, verbose="error")
        ref = raw.get_data()
        assert rec.data.shape == ref.shape, path
        np.testing.assert_allclose(rec.data, ref, rtol=1e-6, atol=1e-12, err_msg=str(path))
        assert rec.sfreq == raw.info["sfreq"] and rec.ch_names == raw.ch_names
        assert len(rec.annotations) == len(raw.annotations), path
        shift = raw.first_samp / raw.info["sfreq"] if raw.annotations.orig_time else 0.0
        want = sorted(
            zip(raw.annotations.onset - shift, raw.annotations.description), key=lambda t: t[0]
        )
        got = [(a.onset, a.description) for a in rec.annotations]
        assert [d for _, d in got] == [d for _, d in want]
        np.testing.assert_allclose([o for o, _ in got], [o for o, _ in want], atol=1e-9)


def test_annotation_text_and_durations(real_data: Path) -> None:
    reader = registry.create("readers", "mne")
    rec = reader.read(real_data / "mne-testing-data" / "chtypes_edf.edf")
    texts = [a.description for a in rec.annotations]
    assert "high amp RDA F4, C4" in texts and "starts turning head" in texts
    rec = reader.read(real_data / "mne-testing-data" / "test_edf_overlapping_annotations.edf")
    assert len(rec.annotations) == 38
    assert {a.description for a in rec.annotations} == {"T0", "T1", "T2"}
    assert all(a.duration > 0 for a in rec.annotations)
    bdf = reader.read(real_data / "mne-testing-data" / "multiple_annotation_chans.bdf")
    assert bdf.sfreq == 125.0 and len(bdf.annotations) == 10
    eeg = bdf.data[[t == "eeg" for t in bdf.ch_types]]
    assert 0 < np.abs(eeg).max() < 1.0
    assert bdf.extra["mne_ch_types"].count("stim") == 1  # the trigger channel, typed misc here
    assert bdf.ch_types[bdf.extra["mne_ch_types"].index("stim")] == "misc"


def test_ieeg_channel_types_and_positions(real_data: Path) -> None:
    rec = registry.create("readers", "mne").read(
        real_data / "mne-misc-data" / "sample_ecog_ieeg.fif"
    )
    assert rec.modality == "ieeg"
    assert rec.ch_types.count("ecog") == 320 and rec.ch_types.count("seeg") == 74
    assert rec.ch_pos is not None and np.isfinite(rec.ch_pos).all()


def test_scalp_edf_is_eeg(real_data: Path) -> None:
    rec = registry.create("readers", "mne").read(real_data / "eegmat" / "Subject00_2.edf")
    assert rec.modality == "eeg" and rec.sfreq == 500.0 and rec.n_chans == 21
    assert "EEG Fp1" in rec.ch_names


@pytest.fixture
def edf_bytes(real_data: Path) -> bytes:
    return (real_data / "mne-testing-data" / "test_edf_overlapping_annotations.edf").read_bytes()


@pytest.mark.parametrize(
    "case, reason",
    [
        ("truncated", "truncated"),
        ("zero", "zero-length"),
        ("header_only", "no data records|truncated"),
        ("corrupt_header", "corrupt EDF/BDF header"),
        ("wrong_name", "not an EDF/BDF file"),
        ("garbage_fif", "cannot be read as .fif"),
        ("unknown_ext", "not read by the mne reader"),
    ],
)
def test_bad_input_has_a_reason(
    case: str, reason: str, edf_bytes: bytes, real_data: Path, tmp_path: Path
) -> None:
    import re

    fif = (real_data / "mne-misc-data" / "sample_ecog_ieeg.fif").read_bytes()
    name, payload = {
        "truncated": ("t.edf", edf_bytes[: len(edf_bytes) // 2 + 7]),
        "zero": ("z.edf", b""),
        "header_only": ("h.edf", edf_bytes[: 256 * 65]),
        "corrupt_header": ("c.edf", edf_bytes[:236] + b"abcdefgh" + edf_bytes[244:]),
        "wrong_name": ("w.edf", fif),
        "garbage_fif": ("g.fif", edf_bytes[:5000]),
        "unknown_ext": ("u.xyz", edf_bytes),
    }[case]
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(ReaderError) as info:
        registry.create("readers", "mne").read(path)
    msg = str(info.value)
    assert re.search(reason, msg), msg
    assert "\n" not in msg and str(path) in msg


def test_chunked_read_equals_whole_read(real_data: Path) -> None:
    import mne

    from efm_plugins.readers.mne_reader import _get_float32

    raw = mne.io.read_raw(real_data / "eegmat" / "Subject00_2.edf", verbose="error")
    chunked = _get_float32(raw, chunk_s=7.3)  # boundaries inside EDF records
    assert chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, raw.get_data(), rtol=1e-6, atol=1e-12)


def test_ch_type_option_makes_an_ieeg_recording(real_data: Path) -> None:
    """MNE calls every channel of an EDF / Persyst / Nihon Kohden file ``eeg``: an ECoG recording
    came through as modality ``eeg``. ``ch_type`` says what the file cannot."""
    from efm.errors import ConfigError

    path = real_data / "mne-testing-data" / "multiple_annotation_chans.bdf"
    plain = registry.create("readers", "mne").read(path)
    assert plain.modality == "eeg" and plain.ch_types.count("eeg") == 18
    ecog = registry.create("readers", "mne", ch_type="ecog").read(path)
    assert ecog.modality == "ieeg"
    assert ecog.ch_types == ["ecog" if t == "eeg" else t for t in plain.ch_types]
    assert ecog.ch_types.count("ecog") == 18 and ecog.ch_types.count("misc") == 1  # kept
    assert ecog.extra["mne_ch_types"].count("eeg") == 18  # what MNE itself reported
    np.testing.assert_array_equal(ecog.data, plain.data)
    assert registry.create("readers", "mne", ch_type="eeg").read(path).modality == "eeg"
    with pytest.raises(ConfigError, match="ch_type='meg'; options: None, eeg, seeg, ecog"):
        registry.create("readers", "mne", ch_type="meg")


def test_annotation_only_edf_is_no_signal(tmp_path: Path) -> None:
    """A Sleep-EDF-style hypnogram: MNE's "No appropriate channels found for the given picks"."""
    from efm.data.edf import write_edf
    from efm.data.pipeline import failure_kind

    path = write_edf(tmp_path / "h.edf", np.zeros((0, 7500)), 250.0, [], [(0, 30, "W")])
    for check_size in (True, False):  # the header check, and MNE's own failure
        with pytest.raises(ReaderError, match="no signal channels") as info:
            registry.create("readers", "mne", check_size=check_size).read(path)
        assert failure_kind(info.value) == "no-signal" and "picks" not in str(info.value)
