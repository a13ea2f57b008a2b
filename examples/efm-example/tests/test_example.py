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


def test_sizes_build_different_models():
    small = registry.create("backbones", "convnet_small")
    tiny = registry.create("backbones", "convnet_test")
    assert (small.embed_dim, len(small.blocks)) == (96, 4)
    assert (tiny.embed_dim, len(tiny.blocks)) == (16, 1)
    assert registry.create("backbones", "convnet_test", width=32).embed_dim == 32


def test_recipe_assembles_and_trains_a_step():
    import torch

    from efm.assemble import assemble, check
    from efm.config import compose

    cfg = compose(["recipe=example-convnet", "representation.output_size=64",
                   "objective.decoder_depth=1", "objective.decoder_embed_dim=32",
                   "objective.decoder_num_heads=2"])  # fmt: skip
    assert check(cfg) == []
    torch.manual_seed(0)
    obj = assemble(cfg)
    assert obj.backbone.input_size == (64, 64) and obj.backbone.in_chans == 8
    out = obj({"signal": torch.randn(2, 8, 7500) * 30})
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_recipe_trains_under_ddp():
    """efm's distributed conformance check: MAE over the ConvNet, 2 steps as 2 gloo processes."""
    from efm.assemble import data_spec
    from efm.config import compose
    from efm.testing import check_distributed

    cfg = compose(["recipe=example-convnet", "representation.output_size=64",
                   "pipeline.epoch_s=8", "objective.decoder_depth=1",
                   "objective.decoder_embed_dim=32", "objective.decoder_num_heads=2"])  # fmt: skip
    assert check_distributed(cfg, data_spec(cfg, 8)) == []
