"""Test-wide settings: efm's own plugins only, quiet libraries, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["EFM_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.pop("EFM_LOAD_PLUGINS", None)
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path:
    """``EFM_REAL_DATA`` or ``../shared/data/real``; fails under CI when missing, else skips."""
    path = Path(os.environ.get("EFM_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real test data not found at {path} (set EFM_REAL_DATA)")
        pytest.skip(f"real test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_data() -> Path:
    return real_data_dir()


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test starts from the registry of efm's own plugins."""
    from efm import registry

    registry.get_registry(refresh=True)
    yield
