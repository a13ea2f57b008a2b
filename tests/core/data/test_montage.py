"""Channel standardisation to 10-20 names and the regional grouping."""

from __future__ import annotations

import numpy as np
import pytest

from efm.data import montage
from efm.errors import ConfigError, ReaderError
from efm.interfaces import Recording


@pytest.mark.parametrize(
    "name, canon",
    [
        ("EEG Fp1-REF", "Fp1"),
        ("EEG Fp1-Ref", "Fp1"),
        ("FP1", "Fp1"),
        ("fp1-le", "Fp1"),
        ("T3", "T7"),
        ("EEG T5-A1", "P7"),
        ("T6", "P8"),
        ("T7..", "T7"),
        ("O1.", "O1"),
        ("POL Cz", "Cz"),
        ("EEG A2-A1", None),
        ("Fc5.", None),
        ("ECG ECG", None),
        ("EEG 000", None),
    ],
)
def test_canonical(name: str, canon: str | None) -> None:
    assert montage.canonical(name) == canon


def test_types_and_bipolar() -> None:
    assert montage.channel_type("ECG EKG", "eeg") == "ecg"
    assert montage.channel_type("EOG L", "eeg") == "eog"
    assert montage.channel_type("EEG C3-Ref", "eeg") == "eeg"
    assert montage.is_bipolar("Fp1-F7") and montage.is_bipolar("EEG T3 - T5")
    assert not montage.is_bipolar("EEG Fp1-Ref")


def _rec(names: list[str]) -> Recording:
    data = np.arange(len(names) * 10, dtype=np.float32).reshape(len(names), 10)
    return Recording(data, 250.0, names, ["eeg"] * len(names))


def test_standardize_orders_renames_and_positions() -> None:
    names = ["ECG EKG"] + [f"EEG {n}-REF" for n in reversed(montage.STANDARD_1020)]
    names = [n.replace("T7", "T3") for n in names]
    rec = montage.standardize(_rec(names))
    assert rec.ch_names == list(montage.STANDARD_1020)
    assert rec.extra["original_names"][7] == "EEG T3-REF"
    np.testing.assert_array_equal(rec.data[0], _rec(names).data[names.index("EEG Fp1-REF")])
    assert rec.ch_pos is not None and np.isfinite(rec.ch_pos).all()


def test_unknown_layout_and_bipolar_rejected() -> None:
    with pytest.raises(ReaderError, match="unknown channel layout.*EEG 000"):
        montage.standardize(_rec([f"EEG {i:03d}" for i in range(32)]))
    with pytest.raises(ReaderError, match="bipolar montage"):
        montage.standardize(_rec(["Fp1-F7", "F7-T3", "T3-T5", "T5-O1", "Fp2-F8", "F8-T4"]))


def test_region_matrix_averages_present_electrodes() -> None:
    regions = montage.load_regions()
    assert len(regions) == 8 and sum(len(v) for v in regions.values()) == 19
    names = [n for n in montage.STANDARD_1020 if n != "F7"]
    w = montage.region_matrix(names, regions)
    assert w.shape == (8, 18)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert w[0, names.index("Fp1")] == pytest.approx(0.5)  # left frontal: Fp1, F3
    with pytest.raises(ReaderError, match="region 'occipital'"):
        montage.region_matrix([n for n in names if n not in ("O1", "O2")], regions)


def test_custom_regions_file(tmp_path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("regions:\n  left: [Fp1, T3]\n  right: [Fp2, T4]\n")
    assert montage.load_regions(str(p)) == {"left": ("Fp1", "T7"), "right": ("Fp2", "T8")}
    p.write_text("regions:\n  x: [Fp1, Q9]\n")
    with pytest.raises(ConfigError, match="Q9"):
        montage.load_regions(str(p))
