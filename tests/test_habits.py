"""The project's habits: one version, CI's lint in pre-commit, strict mypy on core, the docs."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import yaml

import efm

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_written_once():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "efm.__version__"}
    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings():  # "[tool.setuptools] in pyproject.toml is still beta"
        warnings.simplefilter("ignore")
        config = read_configuration(ROOT / "pyproject.toml")
    assert config["project"]["version"] == efm.__version__


def test_pre_commit_runs_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    entries = [h["entry"] for repo in hooks["repos"] for h in repo["hooks"]]
    assert entries == ["ruff check .", "ruff format --check .", "mypy core"]
    for entry in entries:
        assert entry in ci, f"{entry!r} is not what CI runs"


def test_mypy_is_strict_on_core():
    mypy = _pyproject()["tool"]["mypy"]
    assert mypy["disallow_untyped_defs"] is True and mypy["disallow_incomplete_defs"] is True


def test_changelog_and_contributing():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for heading in (
        "## Add a plugin",
        "### Add a config check",
        "## Run the suites",
        "## Run the benchmarks",
        "## The GPU rule",
    ):
        assert heading in contributing, heading
