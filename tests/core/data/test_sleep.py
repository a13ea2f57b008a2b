"""The pluggable sleep staging stage without and with its optional dependency."""

from __future__ import annotations

import importlib.util
import logging
import os

import numpy as np
import pytest

from efm.data import sleep
from efm.errors import ConfigError, EfmError

HAS_YASA = importlib.util.find_spec("yasa") is not None


def test_bad_mode() -> None:
    with pytest.raises(ConfigError, match="options: auto, yasa, gssc, none"):
        sleep.available("deep")


def test_none_skips() -> None:
    assert sleep.stage(np.zeros((2, 100)), 250.0, ["C3", "C4"], 20, 30.0, "none") is None


@pytest.mark.skipif(HAS_YASA, reason="checks the path without the sleep extra")
def test_auto_without_yasa_skips_with_notice(caplog: pytest.LogCaptureFixture) -> None:
    sleep._NOTICED.clear()
    with caplog.at_level(logging.INFO, logger="efm.data.sleep"):
        assert sleep.stage(np.zeros((2, 100)), 250.0, ["C3", "C4"], 20, 30.0, "auto") is None
    assert "YASA is not installed" in caplog.text
    with pytest.raises(EfmError, match="efm\\[sleep\\]"):
        sleep.available("yasa")


@pytest.mark.skipif(importlib.util.find_spec("gssc") is not None, reason="gssc installed")
def test_gssc_is_opt_in_and_says_how() -> None:
    with pytest.raises(EfmError, match="AGPL"):
        sleep.available("gssc")


@pytest.mark.skipif(not HAS_YASA, reason="needs the sleep extra (yasa)")
def test_yasa_stages_every_epoch() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 250 * 600)) * 20e-6
    out = sleep.stage(x, 250.0, ["C3", "C4", "O1"], 20, 30.0, "yasa")
    assert out is not None and out.shape == (20,) and set(out.tolist()) <= {0, 1, 2, 3, 4}


@pytest.mark.skipif(not HAS_YASA, reason="needs the sleep extra (yasa)")
def test_pipeline_fills_unannotated_stages_with_yasa(small_corpus) -> None:
    from efm import registry
    from efm.data import pipeline
    from efm.data.config import PipelineConfig

    rec = registry.create("readers", "mne").read(sorted(small_corpus.glob("*/*.edf"))[0])
    rec.annotations = [a for a in rec.annotations if "stadium" not in a.description.lower()]
    samples, _ = pipeline.process_recording(rec, vars(PipelineConfig()))
    stages = [s["meta"]["labels"]["sleep_stage"] for s in samples]
    assert len(stages) == 11 and set(stages) <= {0, 1, 2, 3, 4}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
@pytest.mark.skipif(
    importlib.util.find_spec("gssc") is None, reason="GSSC is opt-in, not installed"
)
def test_gssc_opt_in_stages() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 250 * 600)) * 20e-6
    out = sleep.stage(x, 250.0, ["C3", "C4", "F3", "O1"], 20, 30.0, "gssc")
    assert out is not None and out.shape == (20,)
    assert set(out[:19].tolist()) <= {0, 1, 2, 3, 4}  # GSSC cuts the last partial window
