"""Meta-tests that keep the plugin surface honest: hooks documented and tested, recipes valid."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from efm import hookspecs, registry
from efm.config import compose

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("efm_register_"))
TESTS = Path(__file__).parent


def test_the_five_hooks():
    assert HOOKS == [f"efm_register_{k}" for k in sorted(registry.KINDS)]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_and_tested(hook):
    fn = getattr(hookspecs, hook)
    assert list(inspect.signature(fn).parameters) == ["register"]
    assert "register(" in (fn.__doc__ or ""), f"{hook}: its docstring must show the register call"
    kind = hook.removeprefix("efm_register_")
    text = (TESTS / "core" / "fakedist.py").read_text()
    assert f"def {hook}(register)" in text, f"{hook} is not exercised by the plugin tests"
    assert kind in (TESTS / "core" / "test_plugins.py").read_text()


@pytest.mark.parametrize("recipe", sorted(registry.get_registry().tables["recipes"]))
@pytest.mark.parametrize("data", [[], ["data.root=/nonexistent/on/purpose"]])
def test_builtin_recipes_validate(recipe, data):
    cfg = compose([f"recipe={recipe}", *data])
    assert cfg["recipe"] == recipe
    assert cfg["data"]["profile"] == ("full" if data else "demo")
    for node in registry.COMPONENT_NODES:
        assert registry.get(registry.COMPONENT_NODES[node], cfg[node]["name"])


def test_every_package_ships_in_the_wheel():
    """A sub-package missing from pyproject's list installs fine in editable mode and breaks the wheel."""
    import tomllib

    root = TESTS.parent
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for name, folder in cfg["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed, (
        f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    )
