"""The efm command: exit codes, one-line errors, listings, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from efm import registry
from efm.cli import main
from tests.core import fakedist


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.delenv("EFM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("EFM_LOAD_PLUGINS", "efm_clifake,backbones,tokenizers,readers,objectives")
    fakedist.install(
        tmp_path, "efm-clifake", "efm_clifake", fakedist.FAKE_PLUGIN.format(prefix="c_")
    )
    registry.get_registry(refresh=True)
    yield tmp_path
    fakedist.uninstall(tmp_path, "efm_clifake")


def _efm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "efm.cli", *args], capture_output=True, text=True)


def test_unknown_recipe_one_line_exit_2():
    out = _efm("run", "recipe=nonexistent")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown recipe 'nonexistent'")
    assert "options:" in lines[0] and "Traceback" not in out.stderr


def test_debug_reraises():
    out = _efm("--debug", "run", "recipe=nonexistent")
    assert out.returncode == 1 and "Traceback" in out.stderr and "UnknownNameError" in out.stderr


def test_validate_prints_yaml(fake, capsys):
    assert main(["validate", "recipe=c_recipe", "backbone.depth=3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["backbone"] == {"name": "c_net", "width": 8, "depth": 3}


def test_validate_reports_all_problems(fake, capsys):
    assert main(["validate", "recipe=c_recipe", "backbone.bogus=1", "train.steps=abc"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # a header, then one line per problem
    assert lines[0] == "error: invalid config (2 problems):" and len(lines) == 3
    assert lines[1].startswith("  backbone.bogus") and lines[2].startswith("  train.steps='abc'")


def test_run_dry_run(fake, capsys):
    assert main(["run", "--dry-run", "recipe=c_recipe"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["recipe"] == "c_recipe"


def test_list_with_glob(fake, capsys):
    assert main(["list", "backbones", "c_*"]) == 0
    out = capsys.readouterr().out
    assert "c_net" in out and "efm-clifake" in out
    assert main(["list", "backbone"]) == 0  # singular works too
    assert main(["list", "widgets"]) == 2


def test_plugins_json(fake, capsys):
    assert main(["plugins"]) == 0
    infos = {p["plugin"]: p for p in json.loads(capsys.readouterr().out)}
    assert infos["efm_clifake"]["distribution"] == "efm-clifake"
    assert "efm_register_backbones" in infos["efm_clifake"]["hooks"]
    assert infos["backbones"]["distribution"] == "efm"


def test_cp(fake, tmp_path, capsys):
    dest = tmp_path / "copy.yaml"
    assert main(["cp", "recipe=c_recipe", str(dest)]) == 0
    assert main(["validate", f"recipe={dest}"]) == 0
    assert main(["cp", "recipe=c_recipe", str(dest)]) == 2  # never overwrites
    assert main(["cp", "recipe=c_recipe"]) == 2


def test_bad_override_is_usage_error(capsys):
    assert main(["validate", "recipe=epi250k", "notanoverride"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_external_subcommand_owns_its_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--help"])
    assert exc.value.code == 0
    assert "usage: efm prepare" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "pretrain"])
def test_run_and_pretrain_help_list_profiles_keys_and_output_in_plain_text(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "epi250k" in text and "demo, full" in text  # recipes and their profiles
    assert "train.threads=N" in text and "Ctrl-C" in text
    assert "runs/<recipe>-<profile>-<hash>/" in text and "shards/<hash>/" in text
    for node in ("backbone", "train", "data", "eval"):
        assert f"\n  {node} " in text
    assert "``" not in text and ":class:" not in text and ":func:" not in text
