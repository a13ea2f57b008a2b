"""Recipes, the override grammar and validation.

A recipe is a mapping whose component nodes (``reader``, ``representation``, ``backbone``,
``objective``) name registered components, and whose other nodes (``data``, ``pipeline``, ``optim``,
``train``, ``eval``) follow core schemas. Overrides, in order:

``recipe=NAME|PATH``
    The recipe to start from.
``backbone=NAME`` (any component node)
    Choose that component (a group choice, below).
``a.b=value``
    Set a key; the value is parsed as YAML (``3``, ``0.1``, ``[1, 2]``, ``null``).
``~a.b``
    Delete a key (it falls back to the schema default).

A group choice keeps the options the node already holds (from the recipe, its profile or earlier
overrides) that the new component shares with the old one, with the same default: choosing
``backbone=moirai_test`` over ``{name: moirai_small, patch_len: 500}`` keeps ``patch_len: 500``;
options the new component lacks or sizes differently (``d_model`` of another size) fall back to its
defaults, and the CLI says which were dropped. ``~backbone backbone=NAME`` starts from the defaults.

Validation lives in :mod:`efm.validate` (re-exported here): every problem at once, one
:class:`efm.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from efm import registry as _registry
from efm.errors import (
    ConfigError,
    EfmError,
    UnknownNameError,
    UsageError,
    suggest,
)
from efm.validate import (  # noqa: F401  (re-exported: efm.config.validate, check, checker ...)
    CHECKS,
    NODES,
    _validated,
    allowed_values,
    check,
    checker,
    core_schemas,
    resolve,
    run_checks,
    validate,
)

log = logging.getLogger("efm.config")


def load_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where} is not valid YAML: {exc}"]) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError([f"{where} must be a mapping, got {type(doc).__name__}"])
    return doc


def parse_overrides(args: list[str]) -> tuple[str | None, list[tuple[str, str, Any]]]:
    """Split ``recipe=...`` from the other overrides: ``(op, key, value)`` with op ``set|del|choose``."""
    recipe: str | None = None
    ops: list[tuple[str, str, Any]] = []
    for arg in args:
        if arg.startswith("~"):
            ops.append(("del", arg[1:], None))
            continue
        if "=" not in arg:
            raise UsageError(f"override {arg!r} is not of the form key=value or ~key")
        key, raw = arg.split("=", 1)
        key = key.strip()
        if key == "recipe":
            recipe = raw
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        ops.append(("choose" if key in _registry.COMPONENT_NODES else "set", key, value))
    return recipe, ops


def recipe_mapping(name: str) -> tuple[str, dict[str, Any]]:
    """The raw mapping of a registered recipe or a YAML file."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise UsageError(f"recipe file {name!r} does not exist")
        return path.stem, load_yaml(path.read_text(encoding="utf-8"), name)
    comp = _registry.get("recipes", name)
    recipe = comp.builder
    if isinstance(recipe, (str, Path)):
        recipe = load_yaml(Path(recipe).read_text(encoding="utf-8"), str(recipe))
    return comp.name, copy.deepcopy(dict(recipe))


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def _del(cfg: dict[str, Any], key: str) -> list[str]:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.get(p, {})
        if not isinstance(node, dict):
            return []
    if parts[-1] not in node:
        return [f"~{key}: there is no key {key!r} to delete"]
    del node[parts[-1]]
    return []


def _choose(cfg: dict[str, Any], node: str, name: Any) -> None:
    """``node=NAME``: the component's defaults, plus the options of the old node that carry over."""
    kind = _registry.COMPONENT_NODES[node]
    try:
        comp = _registry.get(kind, str(name))
    except UnknownNameError:
        cfg[node] = {"name": name}  # reported with every other problem by validation
        return
    old = cfg.get(node)
    kept, dropped = _carried(kind, {"name": old} if isinstance(old, str) else old, comp)
    defaults = comp.defaults()
    cfg[node] = {"name": comp.name, **defaults, **kept}
    if dropped:
        absent = {k: v for k, v in dropped.items() if k not in defaults}
        reset = {k: v for k, v in dropped.items() if k in defaults}
        said = [f"kept {_show(kept)}"] if kept else []
        if absent:
            said.append(f"dropped {_show(absent)} (not options of {comp.name})")
        if reset:
            said.append(
                f"reset {_show(reset)} to {comp.name}'s defaults "
                f"({_show({k: defaults[k] for k in reset})})"
            )
        log.info("%s=%s: %s", node, comp.name, "; ".join(said))


def _show(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _carried(
    kind: str, old: Any, new: _registry.Component
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the old node's options into those that carry over to ``new`` and those dropped.

    An option carries over when the old component and the new one both have it with the same
    default (it means the same in both); a size's own numbers (``d_model`` of ``moirai_small`` vs
    ``moirai_test``) and options the new component lacks do not.
    """
    if not isinstance(old, dict):
        return {}, {}
    options = {k: v for k, v in old.items() if k != "name"}
    try:
        prev = _registry.get(kind, str(old.get("name")))
    except UnknownNameError:
        return {}, options
    before, after = prev.defaults(), new.defaults()
    kept = {
        k: v for k, v in options.items() if k in before and k in after and before[k] == after[k]
    }
    return kept, {k: v for k, v in options.items() if k not in kept}


def _apply(cfg: dict[str, Any], ops: list[tuple[str, str, Any]]) -> list[str]:
    problems: list[str] = []
    for op, key, value in ops:
        if op == "del":
            problems += _del(cfg, key)
        elif op == "choose":
            _choose(cfg, key, value)
        else:
            _set(cfg, key, value)
    return problems


def compose(
    args: list[str], default_recipe: str | None = None, *, paths: bool = False
) -> dict[str, Any]:
    """Build the resolved config from ``recipe=... key=value ~key ...`` and validate it.

    ``paths=True`` also checks the files the config names on this machine (see :func:`validate`).
    """
    recipe, ops = parse_overrides(args)
    recipe = recipe or default_recipe
    if recipe is None:
        raise UsageError("no recipe given; add recipe=NAME (see `efm list recipes`)")
    name, base = recipe_mapping(recipe)
    profiles = base.pop("profiles", {}) or {}
    probe = copy.deepcopy(base)
    _apply(probe, [o for o in ops if o[0] != "choose"])
    data = probe.get("data") or {}
    profile = data.get("profile", "auto")
    if profile in (None, "auto"):
        profile = "demo" if data.get("root") in (None, "") else "full"
    cfg = copy.deepcopy(base)
    problems: list[str] = []
    if profile in profiles:
        _merge(cfg, profiles[profile])
    elif profile not in ("demo", "full"):
        known = sorted({"auto", "demo", "full", *profiles})
        problems.append(
            f"data.profile: recipe {name!r} has no profile {profile!r}; "
            + suggest(str(profile), known)
        )
    problems += _apply(cfg, ops)
    cfg["recipe"] = name
    cfg.setdefault("data", {})["profile"] = profile
    return _validated(cfg, paths, problems)


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100)


def require(cfg: dict[str, Any], *nodes: str) -> None:
    """Fail with one error when a recipe lacks nodes a command needs."""
    missing = [n for n in nodes if not cfg.get(n)]
    if missing:
        raise EfmError(f"recipe {cfg.get('recipe')!r} has no {', '.join(missing)} node")
