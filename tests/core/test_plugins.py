"""Plugin loading: entry points, switches, duplicates, misspelt hooks."""

from __future__ import annotations

import pytest

from efm import registry
from efm.errors import PluginError
from tests.core import fakedist


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fakedist.install(tmp_path, "efm-fake", "efm_fake", fakedist.FAKE_PLUGIN.format(prefix="fake_"))
    yield tmp_path
    fakedist.uninstall(tmp_path, "efm_fake")
    registry.get_registry(refresh=True)


def test_builtins_load_through_entry_points():
    reg = registry.get_registry(refresh=True)
    mods = {p["module"]: p for p in reg.plugins}
    for kind in ("readers", "tokenizers", "backbones", "objectives"):
        info = mods[f"efm_plugins.{kind}"]
        assert info["distribution"] == "efm"
        assert info["hooks"] == [f"efm_register_{kind}"]
    tasks = mods["efm_plugins.tasks"]  # tasks, and the Bonn reader they need
    assert tasks["hooks"] == ["efm_register_readers", "efm_register_tasks"]
    assert "eegbci-imagery" in tasks["registered"]["tasks"]


def test_third_party_registers_every_kind(third_party):
    reg = registry.get_registry(refresh=True)
    info = {p["plugin"]: p for p in reg.plugins}["efm_fake"]
    assert info["distribution"] == "efm-fake" and info["version"] == "1.2.3"
    assert info["registered"] == {
        "readers": ["fake_reader"],
        "tokenizers": ["fake_image", "fake_tokens"],
        "backbones": ["fake_net"],
        "objectives": ["fake_loss"],
        "recipes": ["fake_recipe"],
        "tasks": ["fake_task"],
    }
    assert reg.get("backbones", "fake_net").distribution == "efm-fake"
    assert registry.create("backbones", "fake_net", depth=3) == ("built", {"width": 4, "depth": 3})


def test_autoload_switch_hides_third_party(third_party, monkeypatch):
    monkeypatch.setenv("EFM_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = registry.get_registry(refresh=True)
    assert "fake_net" not in reg.names("backbones")
    assert {p["distribution"] for p in reg.plugins} == {"efm"}


def test_allow_list(third_party, monkeypatch):
    monkeypatch.setenv("EFM_LOAD_PLUGINS", "efm_fake,backbones")
    reg = registry.get_registry(refresh=True)
    assert sorted(p["plugin"] for p in reg.plugins) == ["backbones", "efm_fake"]
    monkeypatch.setenv("EFM_LOAD_PLUGINS", "")
    assert registry.get_registry(refresh=True).plugins == []


def test_duplicate_name_names_both_distributions(third_party, tmp_path, monkeypatch):
    other = tmp_path / "other"
    fakedist.install(
        other, "efm-copycat", "efm_copycat", fakedist.FAKE_PLUGIN.format(prefix="fake_")
    )
    try:
        with pytest.raises(PluginError, match="efm-fake.*efm-copycat|efm-copycat.*efm-fake") as exc:
            registry.get_registry(refresh=True)
        assert "registered twice" in str(exc.value)
    finally:
        fakedist.uninstall(other, "efm_copycat")


def test_misspelt_hook_fails_at_startup(tmp_path, monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    src = "import efm\n\n@efm.hookimpl\ndef efm_register_backbone(register):\n    pass\n"
    fakedist.install(tmp_path, "efm-typo", "efm_typo", src)
    try:
        with pytest.raises(PluginError, match="efm_register_backbone"):
            registry.get_registry(refresh=True)
    finally:
        fakedist.uninstall(tmp_path, "efm_typo")


def test_broken_plugin_import_is_a_plugin_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fakedist.install(tmp_path, "efm-broken", "efm_broken", "raise RuntimeError('boom')\n")
    try:
        with pytest.raises(PluginError, match="efm-broken.*boom.*EFM_DISABLE_PLUGIN_AUTOLOAD"):
            registry.get_registry(refresh=True)
    finally:
        fakedist.uninstall(tmp_path, "efm_broken")


def test_builtin_plugin_modules_are_cheap_to_import():
    import subprocess
    import sys

    code = (
        "import sys, efm_plugins.readers, efm_plugins.tokenizers, efm_plugins.backbones, "
        "efm_plugins.objectives; from efm import registry; registry.get_registry(); "
        "print(sorted(m for m in ('torch', 'mne', 'neo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
