"""Shared fixtures: a private EFM_CACHE and a small demo corpus, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def efm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("efm-cache")


@pytest.fixture(autouse=True)
def _private_cache(efm_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFM_CACHE", str(efm_cache))


@pytest.fixture(scope="session")
def small_corpus(efm_cache: Path) -> Path:
    """3 patients x 5.5 min (11 epochs each) of demo EDF+."""
    import os

    old = os.environ.get("EFM_CACHE")
    os.environ["EFM_CACHE"] = str(efm_cache)
    try:
        from efm.data import demo

        return demo.ensure_corpus(3, 5.5, 0)
    finally:
        if old is None:
            os.environ.pop("EFM_CACHE", None)
        else:
            os.environ["EFM_CACHE"] = old
