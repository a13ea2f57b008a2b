"""Registry look-ups and suggestions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from efm import registry
from efm.errors import ConfigError, PluginError, UnknownNameError, closest


@dataclass
class _Cfg:
    width: int = 2


def _reg() -> registry.Registry:
    reg = registry.Registry()
    cb = reg.register_callback("backbones", "p1", "dist-one")
    cb("alpha_small", lambda **k: k, _Cfg, aliases=("alpha-s",))
    cb("alpha_base", lambda **k: k, _Cfg)
    cb("beta_test", lambda **k: k)
    return reg


def test_names_glob_and_alias():
    reg = _reg()
    assert reg.names("backbones", "alpha*") == ["alpha_base", "alpha_small"]
    assert reg.resolve("backbones", "alpha-s") == "alpha_small"
    assert reg.resolve("backbones", "ALPHA_BASE") == "alpha_base"


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as exc:
        _reg().resolve("backbones", "alpha_smal")
    assert "did you mean 'alpha_small'" in str(exc.value)
    assert "options: alpha-s, alpha_base, alpha_small, beta_test" in str(exc.value)


def test_duplicate_alias_is_plugin_error():
    reg = _reg()
    cb = reg.register_callback("backbones", "p2", "dist-two")
    with pytest.raises(PluginError, match="'alpha-s' is registered twice.*dist-one.*dist-two"):
        cb("gamma", lambda **k: k, aliases=("alpha-s",))


def test_schema_must_be_dataclass():
    with pytest.raises(PluginError, match="dataclass"):
        _reg().register_callback("backbones", "p", "d")("x", lambda: 0, dict)


def test_registration_metadata_is_keyword_only_and_validated():
    cb = _reg().register_callback("backbones", "p", "d")
    with pytest.raises(PluginError, match=r"unknown metadata acepts; options for backbones: "):
        cb("x", lambda: 0, acepts=("image",))
    with pytest.raises(PluginError, match=r"accepts=\('pixels',\) \(options: image, token"):
        cb("x", lambda: 0, accepts=("pixels",))
    with pytest.raises(TypeError):  # metadata is keyword-only: no fourth positional argument
        cb("x", lambda: 0, None, ("image",))
    cb("x", lambda: 0, accepts=("image",), description="fine")


def test_builtin_recipes_register_through_the_hook_like_a_third_party():
    reg = registry.get_registry(refresh=True)
    comp = reg.get("recipes", "epi-250k")  # an alias
    assert comp.name == "epi250k" and comp.distribution == "efm"
    assert comp.plugin == "recipes"  # the entry point, not a private path in efm.registry
    assert "efm_register_recipes" in {
        h for p in reg.plugins if p["plugin"] == "recipes" for h in p["hooks"]
    }


def test_create_rejects_unknown_options(monkeypatch):
    reg = _reg()
    monkeypatch.setattr(registry, "_REGISTRY", reg)
    assert registry.create("backbones", "alpha_base", width=5) == {"width": 5}
    with pytest.raises(ConfigError, match="no option 'depth'; options: width"):
        registry.create("backbones", "alpha_base", depth=5)


def test_closest():
    assert closest("hiera_bse", ["hiera_base", "hiera_small", "moirai_base"])[0] == "hiera_base"
    assert closest("zzz", ["hiera_base"]) == []
