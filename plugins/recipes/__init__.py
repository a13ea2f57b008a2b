"""efm's built-in recipes (``registry.yaml``), registered through the ``efm`` entry-point group
exactly like a third party's: a plugin that calls ``register(name, recipe, aliases=...,
description=...)`` for each recipe of its YAML file."""

from __future__ import annotations

from importlib import resources

import efm


@efm.hookimpl
def efm_register_recipes(register):
    """Register the recipes of efm's ``registry.yaml`` (shipped inside the wheel)."""
    from efm.config import load_yaml

    text = resources.files("efm").joinpath("registry.yaml").read_text(encoding="utf-8")
    for name, recipe in (load_yaml(text, "registry.yaml").get("recipes") or {}).items():
        recipe = dict(recipe)
        aliases = tuple(recipe.pop("aliases", ()) or ())
        register(name, recipe, aliases=aliases, description=recipe.pop("description", ""))
