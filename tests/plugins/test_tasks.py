"""Every built-in task through the shared TaskSuite, on the real recordings where they exist."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from efm import registry
from efm.testing import TaskSuite

REAL = Path(os.environ.get("EFM_REAL_DATA", Path(__file__).parents[3] / "shared" / "data" / "real"))


class TestBuiltinTasks(TaskSuite):
    names = sorted(registry.get_registry().tables["tasks"])
    roots = {
        "eegmat-arithmetic": str(REAL / "eegmat"),
        "eegbci-imagery": str(REAL / "eegbci"),
        "eegbci-left-right": str(REAL / "eegbci"),
        "bonn-seizure": str(REAL / "bonn"),
    }


def test_real_data_present():
    if os.environ.get("CI") and not REAL.is_dir():
        pytest.fail(f"the real recordings are missing at {REAL}")


def test_bonn_reader_reads_a_segment():
    path = REAL / "bonn" / "E_S" / "S001.txt"
    if not path.is_file():
        pytest.skip("no Bonn data")
    rec = registry.create("readers", "bonn").read(path)
    raw = np.loadtxt(path)
    assert rec.data.shape == (1, 4097) and rec.sfreq == pytest.approx(173.61)
    np.testing.assert_allclose(rec.data[0], raw * 1e-6, rtol=1e-6)
