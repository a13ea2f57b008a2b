"""Recipes, the override grammar and all-at-once validation."""

from __future__ import annotations

import pytest

from efm import registry
from efm.config import compose, parse_overrides, to_yaml
from efm.errors import ConfigError, UsageError
from tests.core import fakedist


@pytest.fixture(autouse=True)
def fake(tmp_path, monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("EFM_LOAD_PLUGINS", "efm_cfgfake")
    fakedist.install(
        tmp_path, "efm-cfgfake", "efm_cfgfake", fakedist.FAKE_PLUGIN.format(prefix="t_")
    )
    registry.get_registry(refresh=True)
    yield
    fakedist.uninstall(tmp_path, "efm_cfgfake")


def test_parse_overrides():
    recipe, ops = parse_overrides(
        ["recipe=x", "a.b=3", "~c.d", "backbone=foo", "e=[1, 2]", "f=null"]
    )
    assert recipe == "x"
    assert ops == [
        ("set", "a.b", 3),
        ("del", "c.d", None),
        ("choose", "backbone", "foo"),
        ("set", "e", [1, 2]),
        ("set", "f", None),
    ]
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["oops"])


def test_compose_fills_defaults_and_demo_profile():
    cfg = compose(["recipe=t_recipe"])
    assert cfg["backbone"] == {"name": "t_net", "width": 8, "depth": 1}
    assert cfg["data"]["profile"] == "demo" and cfg["train"]["batch_size"] == 2
    assert cfg["train"]["steps"] == 5 and cfg["optim"]["muon_lr"] == 0.02


def test_full_profile_when_data_given():
    cfg = compose(["recipe=t_recipe", "data.root=/data"])
    assert cfg["data"]["profile"] == "full" and cfg["train"]["batch_size"] == 64


def test_dotted_override_and_delete():
    cfg = compose(["recipe=t_recipe", "backbone.depth=4", "~backbone.width", "train.steps=7"])
    assert cfg["backbone"] == {"name": "t_net", "width": 4, "depth": 4}
    assert cfg["train"]["steps"] == 7


def test_choosing_a_component_keeps_shared_options():
    # choosing the same component keeps the recipe's width=8 (an option both share with the same
    # default); `~backbone` first starts from t_net's defaults; later dotted overrides apply last
    cfg = compose(["recipe=t_recipe", "backbone=t_net", "backbone.depth=2"])
    assert cfg["backbone"] == {"name": "t_net", "width": 8, "depth": 2}
    cfg = compose(["recipe=t_recipe", "~backbone", "backbone=t_net", "backbone.depth=2"])
    assert cfg["backbone"] == {"name": "t_net", "width": 4, "depth": 2}


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        compose(
            [
                "recipe=t_recipe",
                "backbone.bogus=1",
                "train.steps=abc",
                "trian.x=1",
                "optim.muon_lr=fast",
            ]
        )
    problems = exc.value.problems
    assert len(problems) == 4, problems
    text = str(exc.value)
    assert (
        "backbone.bogus: unknown option for backbone 't_net'" in text
        and "options: depth, width" in text
    )
    assert "train.steps='abc'" in text and "optim.muon_lr='fast'" in text
    assert "trian: unknown recipe node; did you mean 'train'" in text


def test_unknown_component_and_family_mismatch():
    with pytest.raises(ConfigError) as exc:
        compose(["recipe=t_recipe", "representation.name=t_tokens", "objective.name=t_los"])
    text = str(exc.value)
    assert "gives 'token' inputs but backbone 't_net' accepts image" in text
    assert "compatible representations: t_image" in text
    assert "unknown objective 't_los'; did you mean 't_loss'" in text


def test_recipe_from_file_and_yaml_round_trip(tmp_path):
    cfg = compose(["recipe=t_recipe"])
    path = tmp_path / "mine.yaml"
    path.write_text(to_yaml({k: v for k, v in cfg.items() if k != "recipe"}))
    again = compose([f"recipe={path}"])
    assert again["recipe"] == "mine"
    assert {k: v for k, v in again.items() if k != "recipe"} == {
        k: v for k, v in cfg.items() if k != "recipe"
    }


def test_unknown_recipe_and_bad_delete():
    from efm.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 't_recipe'"):
        compose(["recipe=t_recip"])
    with pytest.raises(ConfigError, match="no key 'train.nothing'"):
        compose(["recipe=t_recipe", "~train.nothing"])
    with pytest.raises(UsageError, match="no recipe"):
        compose([])
