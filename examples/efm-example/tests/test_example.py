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


def test_validate_builds_it_on_the_meta_device(caplog):
    """efm validate's assembly check builds MAE over the ConvNet without reading mask values."""
    from efm.assemble import check
    from efm.config import compose

    with caplog.at_level("WARNING", logger="efm.assemble"):
        assert check(compose(["recipe=example-convnet"])) == []
    assert not [r for r in caplog.records if "assembly check" in r.getMessage()]


def test_visible_tokens_in_raster_order():
    """The visible tokens are gathered in raster order, with or without ``n_visible``: the same
    as boolean indexing of all tokens (SimMIM-zeroed) by the mask."""
    import torch
    from einops import rearrange

    bb = registry.create("backbones", "convnet_test", in_chans=1, input_size=(32, 32)).eval()
    x = torch.randn(2, 1, 32, 32)
    grid = bb.mask_shape(x)
    mask = torch.zeros(2, *grid, dtype=torch.bool)
    mask[0, 0, 1] = mask[0, 1, 0] = mask[1, 0, 0] = mask[1, 1, 1] = True
    h = bb.stem(x) * mask[:, None]
    for block in bb.blocks:
        h = h + block(h)
    ref = bb.norm(rearrange(h, "b d h w -> b (h w) d"))[mask.flatten(1)].view(2, 2, -1)
    torch.testing.assert_close(bb(x, mask=mask).features, ref)
    torch.testing.assert_close(bb(x, mask=mask, n_visible=2).features, ref)


def test_recipe_trains_under_ddp():
    """efm's distributed conformance check: MAE over the ConvNet, 2 steps as 2 gloo processes."""
    from efm.assemble import data_spec
    from efm.config import compose
    from efm.testing import check_distributed

    cfg = compose(["recipe=example-convnet", "representation.output_size=64",
                   "pipeline.epoch_s=8", "objective.decoder_depth=1",
                   "objective.decoder_embed_dim=32", "objective.decoder_num_heads=2"])  # fmt: skip
    assert check_distributed(cfg, data_spec(cfg, 8)) == []
