"""Name -> component tables, filled by the plugins' ``efm_register_*`` hooks.

>>> from efm import registry
>>> registry.names("backbones", "hiera*")            # doctest: +SKIP
>>> model = registry.create("backbones", "hiera_test")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from efm.errors import PluginError, UnknownNameError

log = logging.getLogger("efm.registry")

KINDS = ("readers", "tokenizers", "backbones", "objectives", "recipes", "tasks")
SINGULAR = {
    "readers": "reader",
    "tokenizers": "tokenizer",
    "backbones": "backbone",
    "objectives": "objective",
    "recipes": "recipe",
    "tasks": "task",
}
# recipe nodes that name a component, and the registry kind that provides it
COMPONENT_NODES = {
    "reader": "readers",
    "representation": "tokenizers",
    "backbone": "backbones",
    "objective": "objectives",
}


@dataclass
class Component:
    """One registered thing: its builder, config schema and provenance."""

    kind: str
    name: str
    builder: Any  # a callable; for recipes, the recipe mapping
    schema: type | None = None
    plugin: str = ""
    distribution: str = ""
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """One line: the registration's ``description=``, else the builder's or schema's docstring."""
        given = self.meta.get("description")
        if given:
            return str(given).strip().splitlines()[0]
        for obj in (self.builder, self.schema):
            line = _doc_line(obj)
            if line:
                return line
        return ""

    def defaults(self) -> dict[str, Any]:
        """The schema's defaults as a plain dict (empty when there is no schema)."""
        if self.schema is None or not is_dataclass(self.schema):
            return {}
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.structured(self.schema), resolve=True)  # type: ignore[return-value]


def _doc_line(obj: Any) -> str:
    """The first line of a callable's or class's own docstring ('' for dataclasses' generated ones)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if obj is None or isinstance(obj, (dict, str, Path, Lazy)):
        return ""
    for owner in obj.__mro__ if isinstance(obj, type) else (obj,):
        doc = inspect.cleandoc(getattr(owner, "__doc__", None) or "")
        name = getattr(owner, "__name__", "")
        if doc and not doc.startswith(f"{name}(") and owner is not object:
            return doc.split("\n\n")[0].replace("\n", " ")
    return ""


class Registry:
    """The tables of every kind, built from a plugin manager."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self.aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self.plugins: list[dict[str, Any]] = []
        self.pm: Any = None

    # -- registration -------------------------------------------------------------------------
    def register_callback(self, kind: str, plugin: str, distribution: str) -> Callable[..., None]:
        """The ``register`` callable handed to a plugin's hook."""

        def register(
            name: str,
            builder: Any,
            schema: type | None = None,
            *,
            aliases: tuple[str, ...] | list[str] = (),
            **meta: Any,
        ) -> None:
            unknown = sorted(set(meta) - set(META_KEYS[kind]))
            if unknown:
                raise PluginError(
                    f"plugin {plugin!r} (distribution {distribution!r}) registers "
                    f"{SINGULAR[kind]} {name!r} with unknown metadata {', '.join(unknown)}; "
                    f"options for {kind}: {', '.join(META_KEYS[kind])}"
                )
            bad = [
                f"{key}={meta[key]!r} (options: {', '.join(allowed)})"
                for key, allowed in META_VALUES.items()
                if key in meta and not set(_as_tuple(meta[key])) <= set(allowed)
            ]
            if bad:
                raise PluginError(
                    f"plugin {plugin!r} (distribution {distribution!r}) registers "
                    f"{SINGULAR[kind]} {name!r} with {'; '.join(bad)}"
                )
            comp = Component(
                kind, name, builder, schema, plugin, distribution, tuple(aliases), meta
            )
            self.add(comp)

        return register

    def add(self, comp: Component) -> None:
        table, aliases = self.tables[comp.kind], self.aliases[comp.kind]
        for key in (comp.name, *comp.aliases):
            owner = table.get(key) or table.get(aliases.get(key, ""))
            if owner is not None:
                raise PluginError(
                    f"{SINGULAR[comp.kind]} {key!r} is registered twice: by {owner.plugin!r} "
                    f"(distribution {owner.distribution!r}) and by {comp.plugin!r} "
                    f"(distribution {comp.distribution!r}); rename one of them"
                )
        if comp.schema is not None and not is_dataclass(comp.schema):
            raise PluginError(f"{SINGULAR[comp.kind]} {comp.name!r}: schema must be a dataclass")
        table[comp.name] = comp
        for a in comp.aliases:
            aliases[a] = comp.name

    # -- look-up ------------------------------------------------------------------------------
    def resolve(self, kind: str, name: str) -> str:
        table = self.tables[kind]
        if name in table:
            return name
        if name in self.aliases[kind]:
            return self.aliases[kind][name]
        lower = {n.lower(): n for n in table} | {
            a.lower(): t for a, t in self.aliases[kind].items()
        }
        if name.lower() in lower:
            return lower[name.lower()]
        raise UnknownNameError(SINGULAR[kind], name, list(table) + list(self.aliases[kind]))

    def get(self, kind: str, name: str) -> Component:
        return self.tables[kind][self.resolve(kind, name)]

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        return sorted(n for n in self.tables[kind] if fnmatch.fnmatch(n, pattern))

    def __iter__(self) -> Iterator[Component]:
        for kind in KINDS:
            yield from self.tables[kind].values()


# The keyword metadata a registration may carry, per kind (validated when it registers).
META_KEYS: dict[str, tuple[str, ...]] = {
    "readers": ("description", "extensions"),
    "tokenizers": ("description", "family"),
    "backbones": ("description", "family", "accepts"),
    "objectives": ("description", "accepts"),
    "recipes": ("description",),
    "tasks": ("description",),
}

META_VALUES: dict[str, tuple[str, ...]] = {
    "family": ("image", "token", "signal"),
    "accepts": ("image", "token", "signal"),
}


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


_REGISTRY: Registry | None = None


def build() -> Registry:
    """A new registry from the plugins selected by the environment switches."""
    from efm.plugins import make_manager

    pm, infos = make_manager()
    reg = Registry()
    reg.pm = pm
    by_module = {i["module"]: i for i in infos}
    for info in infos:
        info["hooks"] = []
        info["registered"] = {}
    for kind in KINDS:
        hook = getattr(pm.hook, f"efm_register_{kind}")
        for impl in hook.get_hookimpls():
            pname = pm.get_name(impl.plugin)
            info = by_module.get(pname, {"plugin": pname, "distribution": "?", "version": "?"})
            before = set(reg.tables[kind])
            impl.function(
                register=reg.register_callback(kind, info["plugin"], info["distribution"])
            )
            added = sorted(set(reg.tables[kind]) - before)
            if pname in by_module:
                by_module[pname]["hooks"].append(f"efm_register_{kind}")
                by_module[pname]["registered"][kind] = added
    reg.plugins = infos
    return reg


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = build()
    return _REGISTRY


def names(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind matching a glob."""
    return get_registry().names(_kind(kind), pattern)


def get(kind: str, name: str) -> Component:
    return get_registry().get(_kind(kind), name)


def create(kind: str, name: str, **config: Any) -> Any:
    """Build a registered component with its schema defaults updated by ``config``."""
    comp = get(kind, name)
    cfg = comp.defaults()
    unknown = set(config) - set(cfg) if comp.schema is not None else set()
    if unknown:
        from efm.errors import ConfigError

        raise ConfigError(
            [
                f"{SINGULAR[comp.kind]} {comp.name!r} has no option {k!r}; options: "
                f"{', '.join(sorted(cfg)) or 'none'}"
                for k in sorted(unknown)
            ]
        )
    cfg.update(config)
    return comp.builder(**cfg)


def _kind(kind: str) -> str:
    plural = {v: k for k, v in SINGULAR.items()} | {
        "representation": "tokenizers",
        "representations": "tokenizers",
    }
    kind = plural.get(kind, kind)
    if kind not in KINDS:
        raise UnknownNameError("kind", kind, KINDS)
    return kind


def schema_fields(schema: type | None) -> list[str]:
    return [f.name for f in fields(schema)] if schema is not None and is_dataclass(schema) else []


def repo_root() -> Path | None:
    """The source checkout, when efm runs from one (for git provenance)."""
    here = Path(sys.modules["efm"].__file__ or ".").resolve().parent.parent
    return here if (here / ".git").exists() else None


# -- helpers for plugins' registrations --------------------------------------------------------
@dataclass(frozen=True)
class Lazy:
    """A builder that imports ``"module:attr"`` when first called, so ``efm list`` / ``efm
    validate`` never import torch models; the target receives the schema's options.

    ``derived``: options that :mod:`efm.assemble` fills in and that are ``None`` when a component
    is built alone; they are left out of the call then, so the target's own default applies.
    """

    target: str
    derived: tuple[str, ...] = ()

    def resolve(self) -> Any:
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __call__(self, **cfg: Any) -> Any:
        given = {k: v for k, v in cfg.items() if not (k in self.derived and v is None)}
        return self.resolve()(**given)


def sized(schema: type, name: str, **numbers: Any) -> type:
    """A subclass of ``schema`` whose defaults are one size's numbers (``d_model``, ``stages``...).

    The one size-registration pattern of every backbone family: each size is registered with its
    sized schema, so its numbers show in ``efm validate`` / ``efm list``, can be overridden like
    any option (widths under muP), and a group choice (``backbone=NAME``) resets them.
    """
    from dataclasses import make_dataclass

    unknown = sorted(set(numbers) - set(schema_fields(schema)))
    if unknown:
        raise PluginError(f"size {name!r}: {schema.__name__} has no option {', '.join(unknown)}")
    title = "".join(p.title() for p in name.replace("-", "_").split("_"))
    types = {f.name: f.type for f in fields(schema)}
    extra = [(k, types[k], field(default=v)) for k, v in numbers.items()]
    out = make_dataclass(f"{title}Config", extra, bases=(schema,))
    out.size_numbers = dict(numbers)  # type: ignore[attr-defined]
    return out
