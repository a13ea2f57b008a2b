"""Registry look-ups, suggestions and 'not available yet'."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from efm import registry
from efm.errors import ConfigError, NotAvailableError, PluginError, UnknownNameError, closest


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


def test_planned_component_is_not_available_yet(monkeypatch):
    monkeypatch.setitem(registry.PLANNED, "backbones", {"omega_huge": "coming in a later release"})
    with pytest.raises(NotAvailableError, match="'omega_huge' is not available yet: coming"):
        _reg().resolve("backbones", "omega_huge")


def test_create_rejects_unknown_options(monkeypatch):
    reg = _reg()
    monkeypatch.setattr(registry, "_REGISTRY", reg)
    assert registry.create("backbones", "alpha_base", width=5) == {"width": 5}
    with pytest.raises(ConfigError, match="no option 'depth'; options: width"):
        registry.create("backbones", "alpha_base", depth=5)


def test_closest():
    assert closest("hiera_bse", ["hiera_base", "hiera_small", "moirai_base"])[0] == "hiera_base"
    assert closest("zzz", ["hiera_base"]) == []
