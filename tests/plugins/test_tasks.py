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
        "eegbci-rest-left-right": str(REAL / "eegbci"),
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


def test_demo_seizure_labels_follow_the_annotated_seizures(tmp_path, monkeypatch):
    """demo-seizure on a small demo corpus: seizure epochs lie inside the paired onset/offset."""
    from efm.config import compose
    from efm.data import demo, taxonomy
    from efm.evaluate import taskdata
    from efm.evaluate.task import get

    monkeypatch.setenv("EFM_CACHE", str(tmp_path))
    root = demo.ensure_corpus(2, 3.0, 0)
    cfg = compose(["recipe=diver1-EEG"])
    d = taskdata.load(get("demo-seizure"), cfg, root, cache=False)
    assert set(np.unique(d.y)) == {0, 1} and len(set(d.subject)) == 2
    reader = registry.create("readers", "mne")
    for path in sorted(root.glob("*.edf")):
        rec = reader.read(path)
        spans = [
            (a, b)
            for a, b, _, s in taxonomy.intervals(rec.annotations, taxonomy.load())
            if s.label == "seizure"
        ]
        mine = d.recording == path.stem
        for start, y in zip(d.start_s[mine], d.y[mine]):
            cover = sum(max(0.0, min(b, start + 5.0) - max(a, start)) for a, b in spans)
            assert (cover >= 2.5) if y == 1 else (cover == 0.0), (path.name, start, cover)
