"""The example plugin passes efm's backbone suite and is visible through the entry points."""

from __future__ import annotations

import pytest

from efm import registry
from efm.testing import BackboneSuite


@pytest.fixture(autouse=True)
def _autoload(monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("EFM_LOAD_PLUGINS", raising=False)
    registry.get_registry(refresh=True)
    yield
    registry.get_registry(refresh=True)


class TestConvNet(BackboneSuite):
    names = ["convnet_test"]

    def config(self, name):
        return {"input_size": (64, 64)}


def test_registered_through_entry_point():
    reg = registry.get_registry()
    info = {p["plugin"]: p for p in reg.plugins}["example"]
    assert info["distribution"] == "efm-example"
    assert info["registered"]["backbones"] == ["convnet_small", "convnet_test"]
    assert reg.get("recipes", "example-convnet").distribution == "efm-example"
