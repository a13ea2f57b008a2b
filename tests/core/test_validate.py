"""`efm validate` with the built-in plugins: every problem at once, allowed values, bounds, paths."""

from __future__ import annotations

import logging
import re

import pytest
import yaml

from efm import validate
from efm.cli import main, plain
from efm.config import check, checker, compose  # re-exported from efm.validate
from efm.errors import ConfigError


def _problems(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    """Run ``efm validate ARGS``; assert exit 2 with one header line; return the problem lines."""
    assert main(["validate", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: invalid config")
    if len(lines) == 1:  # a single problem is one line
        return [lines[0].removeprefix("error: invalid config: ")]
    assert lines[0] == f"error: invalid config ({len(lines) - 1} problems):"
    return [line.strip() for line in lines[1:]]


def test_every_problem_reported_together(capsys):
    problems = _problems(capsys, "recipe=epi250k", "train.steps=abc", "trian.x=1", "backbone=foo")
    assert len(problems) == 3, problems
    assert problems[0].startswith("trian: unknown recipe node; did you mean 'train'?")
    assert problems[1].startswith("backbone.name: unknown backbone 'foo'; options: ")
    assert "hiera_base" in problems[1]
    assert problems[2].startswith("train.steps='abc': Value 'abc' of type 'str' could not be")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.steps=-3", "train.steps=-3: must be >= 1"),
        ("train.steps=0", "train.steps=0: must be >= 1"),
        ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
        ("train.num_workers=-1", "train.num_workers=-1: must be >= 0"),
        ("data.workers=-2", "data.workers=-2: must be >= 0"),
        ("pipeline.sfreq=0", "pipeline.sfreq=0: must be > 0"),
        ("pipeline.min_epochs=0", "pipeline.min_epochs=0: must be >= 1"),
        ("eval.seeds=0", "eval.seeds=0: must be >= 1"),
        ("eval.test_fraction=1.5", "eval.test_fraction=1.5: must be < 1"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2: must be <= 1"),
    ],
)
def test_bounds(capsys, override, message):
    assert _problems(capsys, "recipe=epi250k", override) == [message]


def test_fixed_values_list_what_is_allowed(capsys):
    problems = _problems(
        capsys, "recipe=epi250k", "pipeline.path=xyz", "train.compile=fast", "train.precision=fp8"
    )
    assert problems == [
        "pipeline.path='xyz' is not allowed; options: eeg, ieeg",
        "train.precision='fp8' is not allowed; did you mean 'fp32'? options: auto, bf16, fp32",
        "train.compile='fast' is not allowed; did you mean 'default'? "
        "options: default, max-autotune, none, reduce-overhead",
    ]


def test_component_literals_attention_and_tail(capsys):
    problems = _problems(
        capsys, "recipe=diver1-iEEG", "backbone.attention=cuda", "representation.tail=cut"
    )
    assert "representation.tail='cut' is not allowed; options: drop, error, pad" in problems
    assert any(
        p.startswith("backbone.attention='cuda' is not allowed;")
        and "options: auto, flex, sdpa" in p
        for p in problems
    )
    assert len(problems) == 2


def test_hiera_checks_run_without_building_the_model(capsys):
    problems = _problems(capsys, "recipe=epi250k", "backbone.input_size=[100, 128]")
    assert problems == [
        "backbone: hiera: input_size[0]=100 must be a multiple of patch_stride * mask unit = 32 "
        "(e.g. 96) with a stem that keeps size / stride tokens"
    ]
    problems = _problems(capsys, "recipe=epi250k", "backbone.q_pool=4", "train.steps=-1")
    # input_size is derived here, so Hiera's own check runs in the assembly check (meta device)
    assert sorted(problems) == [
        "backbone 'hiera_test': hiera: q_pool=4 must be in [0, 3]",
        "train.steps=-1: must be >= 1",
    ]


def test_profile_options_listed_once(capsys):
    (problem,) = _problems(capsys, "recipe=epi250k", "data.profile=huge", "train.steps=5")
    assert problem == (
        "data.profile: recipe 'epi250k' has no profile 'huge'; options: auto, demo, full"
    )


def test_profile_problem_reported_with_the_others(capsys):
    problems = _problems(capsys, "recipe=epi250k", "data.profile=huge", "train.steps=-5")
    assert len(problems) == 2 and problems[1] == "train.steps=-5: must be >= 1"


def test_missing_data_root_before_any_setup(capsys, monkeypatch, tmp_path):
    import efm.run

    def fail(cfg):
        raise AssertionError("set-up started")

    monkeypatch.setattr(efm.run, "run", fail)
    missing = tmp_path / "nothing-here"
    assert main(["run", "recipe=epi250k", f"data.root={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: invalid config: data.root='{missing}': no such file or directory (give the "
        "folder of the recordings, or leave data.root unset for the embedded demo corpus)"
    )
    assert _problems(capsys, "recipe=epi250k", f"data.root={missing}", "pipeline.taxonomy=t.yaml")[
        1
    ] == ("pipeline.taxonomy='t.yaml': no such file (or use 'default')")
    # in Python, a recipe for another machine still composes; the CLI checks paths
    assert compose(["recipe=epi250k", f"data.root={missing}"])["data"]["profile"] == "full"
    with pytest.raises(ConfigError, match="no such file or directory"):
        compose(["recipe=epi250k", f"data.root={missing}"], paths=True)
    assert main(["validate", "recipe=epi250k", f"data.root={tmp_path}"]) == 0


def test_overrides_before_and_after_flags(capsys):
    assert main(["run", "recipe=epi250k", "--dry-run", "train.steps=5"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 5
    assert main(["run", "--dry-run", "recipe=epi250k", "train.steps=6", "--verbose"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 6
    assert main(["pretrain", "recipe=epi250k", "train.steps=7", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 7
    assert main(["validate", "recipe=epi250k", "--debug", "train.steps=8"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 8


def test_group_choice_keeps_shared_options(caplog):
    caplog.set_level(logging.INFO, logger="efm.config")
    # patch_len is derived (None) since efm.assemble; attention is an option both sizes share
    cfg = compose(["recipe=diver1-EEG", "backbone.attention=sdpa", "backbone=moirai_tiny"])
    assert cfg["backbone"]["attention"] == "sdpa" and cfg["backbone"]["d_model"] == 256
    assert cfg["backbone"]["patch_len"] is None
    # a size's own numbers are reset to the new size's, and the CLI log says so
    cfg = compose(
        [
            "recipe=diver1-EEG",
            "backbone.attention=sdpa",
            "backbone.d_model=128",
            "backbone=moirai_tiny",
        ]
    )
    assert cfg["backbone"]["d_model"] == 256 and cfg["backbone"]["attention"] == "sdpa"
    assert (
        "backbone=moirai_tiny: kept attention='sdpa'; reset d_model=128 to moirai_tiny's "
        "defaults (d_model=256)" in caplog.messages
    )
    # options the new component lacks are dropped, and named
    cfg = compose(["recipe=epi250k", "representation=morlet"])
    assert cfg["representation"]["output_size"] == 128  # the demo's size carries over
    assert (
        "representation=morlet: kept output_size=128; dropped n_freqs_out=128 "
        "(not options of morlet)" in caplog.messages
    )
    # ~node first: the component's defaults only
    cfg = compose(
        ["recipe=diver1-EEG", "backbone.attention=sdpa", "~backbone", "backbone=moirai_tiny"]
    )
    assert cfg["backbone"]["attention"] == "auto"


def test_checker_is_the_extension_point(monkeypatch):
    seen = []
    monkeypatch.setattr(validate, "CHECKS", list(validate.CHECKS))

    @checker("backbone", "train")
    def steps_vs_depth(cfg):
        seen.append(cfg["backbone"]["name"])
        return [] if cfg["train"]["steps"] > 10 else ["train.steps: too few for this test"]

    cfg = compose(["recipe=epi250k", "train.steps=50"])
    assert seen == ["hiera_test"] and cfg["train"]["steps"] == 50
    with pytest.raises(ConfigError) as exc:
        compose(["recipe=epi250k", "train.steps=5", "optim.adamw_lr=-1"])
    assert exc.value.problems == [
        "optim.adamw_lr=-1: must be >= 0",
        "train.steps: too few for this test",
    ]
    # a check whose node is broken is skipped (no KeyError, no second message)
    seen.clear()
    problems = check({"recipe": "x", "backbone": {"name": "nope"}, "train": {"steps": 1}})
    assert seen == [] and len(problems) == 1 and "unknown backbone 'nope'" in problems[0]


def test_run_help_lists_profiles_keys_and_output(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "epi250k",
        "diver1-iEEG",
        "demo, full",
        "data.profile=NAME",
        "  train          steps, batch_size",
        "  backbone       a registered backbone",
        "runs/<recipe>-<profile>-<hash>/",
        "${EFM_CACHE:-~/.cache/efm}/shards/",
        "efm run recipe=epi250k --dry-run train.steps=5",
    ):
        assert text in out, text
    assert "``" not in out and ":class:" not in out


@pytest.mark.parametrize("command", ["pretrain", "prepare", "probe", "validate", "mup-check"])
def test_other_help_is_useful_and_plain(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: efm {command}" in out and f"efm {command}: " in out
    assert "``" not in out and ":class:" not in out and ":func:" not in out
    if command == "pretrain":
        assert "pretrain, without probes" in out and "recipes and their profiles" in out


def test_top_level_help_is_plain(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "`" not in out and "efm COMMAND --help" in out
    # every command's help starts on its name's line, the longest name included
    assert re.search(r"\n {4}prepare +recordings on disk to WebDataset shards", out)
    assert re.search(r"\n {4}consolidate +one model.safetensors", out)


def test_plain_strips_rst():
    assert plain("``efm run``: see :class:`~efm.errors.ConfigError` and `x`") == (
        "efm run: see ConfigError and x"
    )
    assert plain(":func:`efm.config.compose`") == "efm.config.compose"


def test_list_gives_one_line_per_component(capsys):
    assert main(["list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert rows
    for row in rows:
        name, dist, *text = row.split()
        assert text and not text[0].startswith("["), f"{name} has no description: {row!r}"
        assert "``" not in row
    out = "\n".join(rows)
    assert "hiera_base " in out and "Hiera (base size)" in out
    assert "MOIRAI any-variate encoder (DIVER-1), 64 wide, 2 layers" in out  # moirai_test
    assert "Hann STFT power in dB" in out  # spectrogram: its schema's docstring


def test_moirai_checks_run_without_building_the_model(capsys):
    problems = _problems(
        capsys,
        "recipe=diver1-iEEG",
        "backbone.d_model=100",
        "backbone.dropout=1.5",
        "backbone.patch_len=50",  # explicit: derived values are checked by efm.assemble
    )
    assert problems == [
        "backbone: d_model 100 must be a multiple of head_dim 32 and of 4",
        "backbone: d_model 100 must be a multiple of 16 for 50-sample patches",
        "backbone: dropout=1.5 must be in [0, 1)",
    ]
    # every size of every family validates with its defaults
    from efm import registry

    for name in registry.names("backbones", "moirai_*") + registry.names("backbones", "hiera_*"):
        comp = registry.get("backbones", name)
        assert comp.schema(**comp.defaults()).check() == [], name


def test_family_mismatch_reported_with_option_problems(capsys):
    problems = _problems(capsys, "recipe=epi250k", "backbone=moirai_test", "backbone.bogus=1")
    assert len(problems) == 2
    assert problems[0].startswith("backbone.bogus: unknown option for backbone 'moirai_test'")
    assert problems[1].startswith(
        "representation 'spectrogram' gives 'image' inputs but backbone 'moirai_test' accepts token"
    )
