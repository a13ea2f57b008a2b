"""efm.assemble: one test (or a few) per row of issue 12's table of numbers linked by hand.

Each row: the derived value follows the node it comes from, and an explicit value that disagrees is
an error naming both keys. ``plan`` derives without building the backbone (cheap); ``assemble``
builds the whole objective; ``check`` is what ``efm validate`` runs (meta device, no data read).
"""

from __future__ import annotations

import pytest
import torch

from efm.assemble import DataSpec, assemble, check, data_spec, plan
from efm.config import compose
from efm.errors import ConfigError


def _plan(*overrides: str, n_chans: int | None = None):
    cfg = compose(list(overrides))
    return plan(cfg, data_spec(cfg, n_chans))


def _problem(*overrides: str) -> str:
    problems = check(compose(list(overrides)))
    assert len(problems) >= 1, overrides
    return "\n".join(problems)


# -- row 1: pipeline.sfreq and the tokenizer's sfreq ---------------------------------------------
def test_pipeline_sfreq_reaches_the_spectrogram() -> None:
    """``pipeline.sfreq=500`` gives a 500 Hz spectrogram frequency axis (1 Hz..100 Hz bins at
    df = 500 / 1024), not the 250 Hz default's."""
    p, rep = _plan("recipe=epi250k", "pipeline.sfreq=500", "pipeline.h_freq=200")
    assert p.options["representation"]["sfreq"] == 500.0 and rep.sfreq == 500.0
    df = 500.0 / rep.n_fft
    assert rep.bin_max == int(100.0 / df) == 204  # at 250 Hz it would be bin 409
    _, default = _plan("recipe=epi250k")
    assert default.sfreq == 250.0 and default.bin_max == 409


def test_explicit_tokenizer_sfreq_disagreeing_is_an_error() -> None:
    msg = _problem("recipe=epi250k", "pipeline.sfreq=500", "representation.sfreq=250")
    assert "representation.sfreq=250" in msg and "pipeline.sfreq" in msg
    # agreeing explicit values are fine
    assert check(compose(["recipe=epi250k", "representation.sfreq=250"])) == []


def test_pipeline_sfreq_reaches_patches_and_multi_domain_targets() -> None:
    """DIVER-1 at 250 Hz: 0.1 s patches are 25 samples, the targets stop at 125 Hz."""
    cfg = compose(["recipe=diver1-EEG", "pipeline.sfreq=250"])
    torch.manual_seed(0)
    obj = assemble(cfg)
    assert obj.representation.sfreq == 250.0 and obj.representation.patch_len == 250
    assert obj.backbone.cfg.patch_len == 250 and obj.sfreq == 250.0
    assert obj.layout["fft_bins"] == 125  # max_hz derived: sfreq / 2 < pipeline.h_freq = 200


# -- row 2: representation.output_size and Hiera input_size ----------------------------------------
def test_output_size_builds_a_matching_hiera() -> None:
    """``representation.output_size=96`` builds a 96 x 96 Hiera (and its MAE grid)."""
    cfg = compose(["recipe=epi250k", "representation.output_size=96"])
    torch.manual_seed(0)
    obj = assemble(cfg)
    assert obj.backbone.input_size == (96, 96) and obj.backbone.in_chans == 8
    assert obj.input_size == (96, 96) and obj.grid == (3, 3)
    x = torch.randn(2, 8, 7500) * 30
    assert torch.isfinite(obj({"signal": x}).loss)


def test_disagreeing_input_size_is_an_error_naming_both_keys() -> None:
    msg = _problem(
        "recipe=epi250k", "representation.output_size=96", "backbone.input_size=[128,128]"
    )
    assert "backbone.input_size=[128, 128]" in msg and "representation.output_size" in msg
    with pytest.raises(ConfigError, match="backbone.input_size"):
        assemble(compose(["recipe=epi250k", "backbone.input_size=[96,96]"]))


def test_hiera_own_validation_is_reported_by_check() -> None:
    """An output size Hiera cannot tile (not a multiple of 32) is caught before any data is read."""
    msg = _problem("recipe=epi250k", "representation.output_size=100")
    assert "hiera" in msg and "multiple" in msg


# -- row 3: regions / stacked representations and Hiera in_chans / 3-D depth ----------------------
def test_channel_count_and_stack_give_in_chans_and_depth() -> None:
    p, _ = _plan("recipe=epi250k")
    assert p.options["backbone"]["in_chans"] == 8  # the 8 default regions
    p, _ = _plan("recipe=epi250k", n_chans=4)  # e.g. a manifest of 4-region shards
    assert p.options["backbone"]["in_chans"] == 4
    p, rep = _plan(
        "recipe=epi250k",
        "representation=stack",
        "representation.names=[spectrogram,temporal_matrix]",
        "representation.output_size=64",
    )
    assert p.output_shape == (2, 8, 64, 64)
    assert p.options["backbone"]["input_size"] == [8, 64, 64]  # 3D: regions are frames
    assert p.options["backbone"]["in_chans"] == 2  # stacked representations are channels
    p, _ = _plan("recipe=epi250k", "representation=wpli", "representation.output_size=64")
    assert p.options["backbone"]["in_chans"] == 1  # one connectivity image per sample


def test_stack_builds_a_3d_hiera() -> None:
    cfg = compose(
        [
            "recipe=epi250k",
            "representation=stack",
            "representation.names=[spectrogram,temporal_matrix]",
            "representation.output_size=64",
        ]
    )
    torch.manual_seed(0)
    obj = assemble(cfg)
    assert obj.backbone.input_size == (8, 64, 64) and obj.backbone.in_chans == 2
    assert len(obj.grid) == 3


def test_disagreeing_in_chans_is_an_error_naming_both_keys() -> None:
    msg = _problem("recipe=epi250k", "backbone.in_chans=3")
    assert "backbone.in_chans=3" in msg and "pipeline.regions" in msg
    msg = _problem(
        "recipe=epi250k",
        "representation=stack",
        "representation.names=[spectrogram,temporal_matrix]",
        "backbone.in_chans=3",
    )
    assert "backbone.in_chans=3" in msg and "representation.names" in msg


# -- row 4: patch_s x sfreq and MOIRAI patch_len; embed_window and the training crops -------------
def test_moirai_patch_len_and_embed_window_are_derived() -> None:
    p, _ = _plan("recipe=diver1-iEEG", "data.root=/data")  # the paper's configuration
    assert p.options["backbone"]["patch_len"] == 50  # 0.1 s x 500 Hz
    assert p.options["backbone"]["embed_window"] == 50  # 5 s crops / 0.1 s patches
    p, _ = _plan("recipe=diver1-iEEG")  # demo: 2 s crops
    assert p.options["backbone"]["embed_window"] == 20
    p, _ = _plan("recipe=diver1-EEG")  # 1 s patches, no crops
    assert (p.options["backbone"]["patch_len"], p.options["backbone"]["embed_window"]) == (500, 0)
    p, _ = _plan("recipe=diver1-iEEG", "representation.patch_s=0.2")
    assert p.options["backbone"]["patch_len"] == 100
    # choosing another size keeps the derivation (the recipe's patch_len used to be dropped)
    p, _ = _plan("recipe=diver1-iEEG", "data.root=/data", "backbone=moirai_test")
    assert p.options["backbone"]["patch_len"] == 50


def test_disagreeing_patch_len_and_embed_window_are_errors() -> None:
    msg = _problem("recipe=diver1-iEEG", "backbone.patch_len=500")
    assert "backbone.patch_len=500" in msg and "representation.patch_s" in msg
    assert "pipeline.sfreq" in msg
    msg = _problem("recipe=diver1-iEEG", "backbone.embed_window=50")
    assert "backbone.embed_window=50" in msg and "train.crops_s" in msg


# -- row 5: pipeline.epoch_s x sfreq and n_times of morlet / wpli / stack -------------------------
@pytest.mark.parametrize("name", ["morlet", "wpli", "stack"])
def test_n_times_follows_the_epoch(name: str) -> None:
    p, rep = _plan("recipe=epi250k", f"representation={name}", "pipeline.epoch_s=10")
    assert p.options["representation"]["n_times"] == 2500 == rep_n_times(rep)


def rep_n_times(rep: torch.nn.Module) -> int:
    if hasattr(rep, "members"):  # stack: every member that plans for a length got it
        sizes = {m.n_times for m in rep.members if hasattr(m, "n_times")}
        assert len(sizes) == 1
        return sizes.pop()
    return int(rep.n_times)


def test_disagreeing_n_times_is_an_error() -> None:
    msg = _problem("recipe=epi250k", "representation=morlet", "representation.n_times=7500",
                   "pipeline.epoch_s=10")  # fmt: skip
    assert "representation.n_times=7500" in msg and "pipeline.epoch_s" in msg


# -- row 6: multi_domain.max_hz and sfreq / 2, pipeline.h_freq ------------------------------------
def test_max_hz_is_derived_and_bounded() -> None:
    p, _ = _plan("recipe=diver1-EEG")
    assert p.options["objective"]["max_hz"] == 200.0  # pipeline.h_freq at 500 Hz
    p, _ = _plan("recipe=diver1-EEG", "pipeline.h_freq=null")
    assert p.options["objective"]["max_hz"] == 250.0  # sfreq / 2
    msg = _problem("recipe=diver1-EEG", "objective.max_hz=300")
    assert "objective.max_hz=300" in msg and "pipeline.sfreq" in msg and "pipeline.h_freq" in msg
    assert check(compose(["recipe=diver1-EEG", "objective.max_hz=100"])) == []


# -- check: every problem at once, shapes only ----------------------------------------------------
def test_check_reports_every_problem_and_reads_no_data(monkeypatch) -> None:
    import efm.data

    def no_data(*a, **k):  # pragma: no cover - failing is the point
        raise AssertionError("check must not prepare data")

    monkeypatch.setattr(efm.data, "ensure_shards", no_data)
    problems = check(
        compose(["recipe=epi250k", "backbone.input_size=[96,96]", "backbone.in_chans=3"])
    )
    assert len(problems) == 2
    assert check(compose(["recipe=epi250k", "data.root=/data"])) == []  # hiera_base: meta only


def test_the_recipes_assemble_cleanly() -> None:
    for recipe in ("epi250k", "diver1-iEEG", "diver1-EEG"):
        for root in ([], ["data.root=/data"]):
            assert check(compose([f"recipe={recipe}", *root])) == [], (recipe, root)


def test_data_spec() -> None:
    spec = data_spec(compose(["recipe=diver1-iEEG"]))
    assert spec == DataSpec(sfreq=500.0, n_times=15000, n_chans=None, h_freq=200.0, crops_s=(2.0,))
    assert data_spec(compose(["recipe=epi250k"])).n_chans == 8


def test_efm_validate_runs_the_assembly_check(capsys) -> None:
    from efm.cli import main

    assert (
        main(["validate", "recipe=epi250k", "backbone.input_size=[96,96]", "backbone.in_chans=3"])
        == 2
    )
    err = capsys.readouterr().err
    assert "backbone.input_size=[96, 96]" in err and "backbone.in_chans=3" in err
    assert main(["validate", "recipe=diver1-iEEG", "backbone=moirai_test"]) == 0


@pytest.mark.parametrize("recipe", ["epi250k", "diver1-iEEG", "diver1-EEG"])
def test_check_builds_every_recipe_on_the_meta_device(recipe, monkeypatch, caplog) -> None:
    """The meta-device build of the backbone and objective succeeds for every built-in recipe
    (a failure there is logged, never silent: see the next test)."""
    import efm.assemble as A

    seen = []
    real = A._objective
    monkeypatch.setattr(A, "_objective", lambda *a: seen.append(real(*a)) or seen[-1])
    with caplog.at_level("WARNING", logger="efm.assemble"):
        assert check(compose([f"recipe={recipe}"])) == []
    assert len(seen) == 1 and next(seen[0].parameters()).device.type == "meta"
    assert not [r for r in caplog.records if "assembly check" in r.getMessage()]


def test_a_failing_meta_build_is_logged_not_silent(monkeypatch, caplog) -> None:
    import efm.assemble as A

    def boom(*a, **k):
        raise RuntimeError("aten::frobnicate has no meta kernel")

    monkeypatch.setattr(A, "_objective", boom)
    with caplog.at_level("WARNING", logger="efm.assemble"):
        assert check(compose(["recipe=diver1-EEG"])) == []
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "building objective 'multi_domain'" in msg and "no meta kernel" in msg
