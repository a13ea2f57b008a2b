"""Recipes, the override grammar and validation.

A recipe is a mapping whose component nodes (``reader``, ``representation``, ``backbone``,
``objective``) name registered components, and whose other nodes (``data``, ``pipeline``, ``optim``,
``train``, ``eval``) follow core schemas. Overrides, in order:

``recipe=NAME|PATH``
    The recipe to start from.
``backbone=NAME`` (any component node)
    Replace the whole node by that component's defaults.
``a.b=value``
    Set a key; the value is parsed as YAML (``3``, ``0.1``, ``[1, 2]``, ``null``).
``~a.b``
    Delete a key (it falls back to the schema default).

Validation collects every problem and raises one :class:`efm.errors.ConfigError`.
"""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from efm import registry as _registry
from efm.errors import (
    ConfigError,
    EfmError,
    NotAvailableError,
    UnknownNameError,
    UsageError,
    suggest,
)


def core_schemas() -> dict[str, type]:
    """The schemas of the non-component nodes, owned by the modules that read them."""
    from efm.data.config import DataConfig, PipelineConfig
    from efm.evaluate.config import EvalConfig
    from efm.train.config import OptimConfig, TrainConfig

    return {
        "data": DataConfig,
        "pipeline": PipelineConfig,
        "optim": OptimConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
    }


NODES = (
    "recipe",
    "description",
    "profiles",
    *_registry.COMPONENT_NODES,
    "data",
    "pipeline",
    "optim",
    "train",
    "eval",
)


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


def _del(cfg: dict[str, Any], key: str) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.get(p, {})
        if not isinstance(node, dict):
            return
    if parts[-1] not in node:
        raise ConfigError([f"~{key}: there is no key {key!r} to delete"])
    del node[parts[-1]]


def _choose(cfg: dict[str, Any], node: str, name: Any) -> None:
    kind = _registry.COMPONENT_NODES[node]
    comp = _registry.get(kind, str(name))
    cfg[node] = {"name": comp.name, **comp.defaults()}


def _apply(cfg: dict[str, Any], ops: list[tuple[str, str, Any]]) -> None:
    for op, key, value in ops:
        if op == "del":
            _del(cfg, key)
        elif op == "choose":
            _choose(cfg, key, value)
        else:
            _set(cfg, key, value)


def compose(args: list[str], default_recipe: str | None = None) -> dict[str, Any]:
    """Build the resolved config from ``recipe=... key=value ~key ...`` and validate it."""
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
    if profile in profiles:
        _merge(cfg, profiles[profile])
    elif profile not in ("demo", "full"):
        raise ConfigError(
            [
                f"data.profile: recipe {name!r} has no profile {profile!r}; "
                + suggest(str(profile), ["auto", "demo", "full", *profiles])
            ]
        )
    _apply(cfg, ops)
    cfg["recipe"] = name
    cfg.setdefault("data", {})["profile"] = profile
    return validate(cfg)


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def _check_node(path: str, schema: type, given: Any, problems: list[str], owner: str) -> dict:
    """Merge ``given`` into the schema's defaults key by key, collecting every problem."""
    base = OmegaConf.structured(schema)
    if given is None:
        given = {}
    if not isinstance(given, dict):
        problems.append(f"{path}: expected a mapping, got {given!r}")
        return OmegaConf.to_container(base, resolve=True)  # type: ignore[return-value]
    names = [f.name for f in fields(schema)] if is_dataclass(schema) else []
    for key, value in given.items():
        if key == "name" and owner:
            continue
        if key not in names:
            problems.append(
                f"{path}.{key}: unknown option for {owner or path}; {suggest(key, names)}"
            )
            continue
        try:
            base = OmegaConf.merge(base, {key: value})
        except OmegaConfBaseException as exc:
            msg = str(exc).splitlines()[0]
            problems.append(f"{path}.{key}={value!r}: {msg}")
    return OmegaConf.to_container(base, resolve=True)  # type: ignore[return-value]


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Resolve names, fill defaults, check types and compatibility; raise every problem at once."""
    problems: list[str] = []
    out: dict[str, Any] = {"recipe": cfg.get("recipe", "?")}
    if cfg.get("description"):
        out["description"] = cfg["description"]
    for key in cfg:
        if key not in NODES:
            problems.append(f"{key}: unknown recipe node; {suggest(key, NODES[3:])}")
    comps: dict[str, _registry.Component] = {}
    for node, kind in _registry.COMPONENT_NODES.items():
        given = cfg.get(node)
        if given is None:
            continue
        if isinstance(given, str):
            given = {"name": given}
        if not isinstance(given, dict) or "name" not in given:
            problems.append(
                f"{node}: needs a 'name' naming a registered {_registry.SINGULAR[kind]}"
            )
            continue
        try:
            comp = _registry.get(kind, str(given["name"]))
        except (UnknownNameError, NotAvailableError) as exc:
            problems.append(f"{node}.name: {exc}")
            out[node] = given
            continue
        comps[node] = comp
        if comp.schema is None:
            out[node] = {"name": comp.name, **{k: v for k, v in given.items() if k != "name"}}
        else:
            values = _check_node(node, comp.schema, given, problems, f"{node} {comp.name!r}")
            out[node] = {"name": comp.name, **values}
    for node, schema in core_schemas().items():
        out[node] = _check_node(node, schema, cfg.get(node), problems, "")
    rep, bb = comps.get("representation"), comps.get("backbone")
    if rep is not None and bb is not None:
        family = rep.meta.get("family", "image")
        accepts = tuple(bb.meta.get("accepts", ("image",)))
        if family not in accepts:
            ok = [
                n
                for n, c in _registry.get_registry().tables["tokenizers"].items()
                if c.meta.get("family", "image") in accepts
            ]
            problems.append(
                f"representation {rep.name!r} gives {family!r} inputs but backbone {bb.name!r} "
                f"accepts {', '.join(accepts)}; compatible representations: {', '.join(ok) or 'none'}"
            )
    if problems:
        raise ConfigError(problems)
    return out


def to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100)


def require(cfg: dict[str, Any], *nodes: str) -> None:
    """Fail with one error when a recipe lacks nodes a command needs."""
    missing = [n for n in nodes if not cfg.get(n)]
    if missing:
        raise EfmError(f"recipe {cfg.get('recipe')!r} has no {', '.join(missing)} node")
