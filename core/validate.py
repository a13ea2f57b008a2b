"""Validation: every problem with a config, collected and reported at once.

Validation (:func:`validate`) collects every problem and raises one :class:`efm.errors.ConfigError`:

1. every node is merged into its schema key by key: unknown keys, wrong types, a value outside a
   ``Literal[...]`` annotation (the message lists the allowed values), and bounds written in the
   field's metadata (``field(default=1, metadata={"ge": 1})``; ``ge``, ``gt``, ``le``, ``lt``); a
   component schema that defines ``check(self) -> list[str]`` is then asked for its own problems;
2. the checks registered with :func:`checker` run on the resolved config, each only when the nodes
   it needs resolved cleanly. Checks of files on this machine (``paths=True``: ``data.root``, region
   and taxonomy files) run when ``validate(..., paths=True)``, as ``efm validate`` and ``efm run``
   do; a recipe for another machine still composes in Python.

The extension point is :func:`checker`: register ``fn(cfg) -> list[str]`` for a check over the
resolved config (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from efm import registry as _registry
from efm.errors import ConfigError, UnknownNameError, suggest


def core_schemas() -> dict[str, type]:
    """The schemas of the non-component nodes, owned by the modules that read them."""
    from efm.data.config import DataConfig, PipelineConfig
    from efm.evaluate.config import EvalConfig
    from efm.scale.config import SweepConfig
    from efm.train.config import OptimConfig, TrainConfig

    return {
        "data": DataConfig,
        "pipeline": PipelineConfig,
        "optim": OptimConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "sweep": SweepConfig,
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
    "sweep",
)


# -- pass 1: every node against its schema ----------------------------------------------------------
@cache
def _hints(schema: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(schema)
    except Exception:  # an annotation that cannot be evaluated: no Literal checks for it
        return {}


def allowed_values(schema: type, key: str) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) field allows; None otherwise."""
    hint = _hints(schema).get(key)
    args: tuple[Any, ...] = ()
    if typing.get_origin(hint) is Literal:
        args = typing.get_args(hint)
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is Literal:
                args += typing.get_args(arg)
            elif arg is type(None):
                args += (None,)
    return args if any(a is not None for a in args) else None


_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "ge": (">=", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("<=", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
}


def _bounds(schema: type, key: str, value: Any) -> list[str]:
    """``must be >= 1`` for each bound in the field's metadata that ``value`` breaks."""
    f = next((f for f in fields(schema) if f.name == key), None)  # type: ignore[arg-type]
    if f is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return []
    return [
        f"must be {sign} {f.metadata[k]}"
        for k, (sign, ok) in _BOUNDS.items()
        if k in f.metadata and not ok(value, f.metadata[k])
    ]


def _check_node(
    path: str, schema: type, given: Any, problems: list[str], owner: str
) -> dict[str, Any]:
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
        allowed = allowed_values(schema, key)
        if allowed is not None and value not in allowed:
            shown = [str(a) for a in allowed if a is not None]
            none = " (or null)" if None in allowed else ""
            problems.append(
                f"{path}.{key}={value!r} is not allowed; {suggest(str(value), shown)}{none}"
            )
            continue
        try:
            base = OmegaConf.merge(base, {key: value})
        except OmegaConfBaseException as exc:
            msg = str(exc).splitlines()[0]
            problems.append(f"{path}.{key}={value!r}: {msg}")
            continue
        for msg in _bounds(schema, key, base[key]):
            problems.append(f"{path}.{key}={value!r}: {msg}")
    return OmegaConf.to_container(base, resolve=True)  # type: ignore[return-value]


def _schema_check(node: str, schema: type, values: dict[str, Any]) -> list[str]:
    """The problems a schema's own ``check(self) -> list[str]`` finds (none when it has none)."""
    own = getattr(schema, "check", None)
    if not callable(own):
        return []
    try:
        found = schema(**values).check()
    except ConfigError as exc:
        found = exc.problems
    return [f"{node}: {p}" for p in found]


def resolve(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str], set[str]]:
    """Names resolved and every node merged into its schema: ``(config, problems, broken nodes)``.

    A broken node is one with a problem; the checks that need it are skipped (see :func:`checker`).
    """
    problems: list[str] = []
    broken: set[str] = set()
    out: dict[str, Any] = {"recipe": cfg.get("recipe", "?")}
    if cfg.get("description"):
        out["description"] = cfg["description"]
    for key in cfg:
        if key not in NODES:
            problems.append(f"{key}: unknown recipe node; {suggest(key, NODES[3:])}")

    def node_problems(node: str, found: list[str]) -> None:
        if found:
            broken.add(node)
            problems.extend(found)

    for node, kind in _registry.COMPONENT_NODES.items():
        given = cfg.get(node)
        if given is None:
            continue
        if isinstance(given, str):
            given = {"name": given}
        if not isinstance(given, dict) or "name" not in given:
            node_problems(
                node,
                [f"{node}: needs a 'name' naming a registered {_registry.SINGULAR[kind]}"],
            )
            continue
        try:
            comp = _registry.get(kind, str(given["name"]))
        except UnknownNameError as exc:
            node_problems(node, [f"{node}.name: {exc}"])
            out[node] = given
            continue
        if comp.schema is None:
            out[node] = {"name": comp.name, **{k: v for k, v in given.items() if k != "name"}}
            continue
        found: list[str] = []
        values = _check_node(node, comp.schema, given, found, f"{node} {comp.name!r}")
        if not found:
            found = _schema_check(node, comp.schema, values)
        node_problems(node, found)
        out[node] = {"name": comp.name, **values}
    for node, schema in core_schemas().items():
        found = []
        out[node] = _check_node(node, schema, cfg.get(node), found, "")
        if not found:
            found = _schema_check(node, schema, out[node])
        node_problems(node, found)
    return out, problems, broken


# -- pass 2: checks over the resolved config --------------------------------------------------------
Check = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class _Check:
    fn: Check
    needs: tuple[str, ...]
    paths: bool


#: the registered checks, in order (see :func:`checker`)
CHECKS: list[_Check] = []


def checker(*needs: str, paths: bool = False) -> Callable[[Check], Check]:
    """Register ``fn(cfg) -> list[str]`` as a validation check (the extension point).

    ``fn`` gets the resolved config (every node filled with its schema's defaults) and returns one
    line per problem, naming the keys involved (or raises :class:`ConfigError`). It runs only when
    the nodes in ``needs`` resolved without problems, so it may use their names and every option
    freely. A check that reads single keys of core nodes needs nothing: a resolved node always holds
    every key (a key that failed its own check keeps its default). ``paths=True`` marks a check of
    files on this machine (run by ``validate(..., paths=True)``).
    """

    def register(fn: Check) -> Check:
        CHECKS.append(_Check(fn, needs, paths))
        return fn

    return register


def run_checks(
    cfg: dict[str, Any], *, paths: bool = False, broken: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Every registered check's problems with a resolved config."""
    problems: list[str] = []
    for c in CHECKS:
        if (
            (c.paths and not paths)
            or broken.intersection(c.needs)
            or not all(n in cfg for n in c.needs)
        ):
            continue
        try:
            problems += c.fn(cfg)
        except ConfigError as exc:
            problems += exc.problems
    return problems


def check(cfg: dict[str, Any], *, paths: bool = False) -> list[str]:
    """Every problem with a config (raw or resolved), one line each; ``[]`` when it is valid."""
    out, problems, broken = resolve(cfg)
    return problems + run_checks(out, paths=paths, broken=broken)


def validate(cfg: dict[str, Any], *, paths: bool = False) -> dict[str, Any]:
    """Resolve names, fill defaults, check types and compatibility; raise every problem at once.

    ``paths=True`` also checks the files and folders the config names (``data.root`` ...), as the
    CLI does before any set-up; without it a recipe written for another machine still validates.
    """
    return _validated(cfg, paths, [])


def _validated(cfg: dict[str, Any], paths: bool, earlier: list[str]) -> dict[str, Any]:
    out, problems, broken = resolve(cfg)
    problems = earlier + problems + run_checks(out, paths=paths, broken=broken)
    if problems:
        raise ConfigError(problems)
    return out


@checker()
def _families(cfg: dict[str, Any]) -> list[str]:
    """The representation gives inputs of a family the backbone accepts (names alone decide)."""
    try:
        rep = _registry.get("tokenizers", str(cfg["representation"]["name"]))
        bb = _registry.get("backbones", str(cfg["backbone"]["name"]))
    except (KeyError, TypeError, UnknownNameError):
        return []  # a node or a name is missing: reported by the first pass
    family = rep.meta.get("family", "image")
    accepts = tuple(bb.meta.get("accepts", ("image",)))
    if family in accepts:
        return []
    ok = [
        n
        for n, c in _registry.get_registry().tables["tokenizers"].items()
        if c.meta.get("family", "image") in accepts
    ]
    return [
        f"representation {rep.name!r} gives {family!r} inputs but backbone {bb.name!r} "
        f"accepts {', '.join(accepts)}; compatible representations: {', '.join(ok) or 'none'}"
    ]


@checker()
def _data_patterns(cfg: dict[str, Any]) -> list[str]:
    """``data.patient_regex`` compiles."""
    rx = cfg["data"]["patient_regex"]
    try:
        re.compile(rx)
    except re.error as exc:
        return [f"data.patient_regex={rx!r}: not a regular expression ({exc})"]
    return []


@checker("sweep", "backbone")
def _sweep(cfg: dict[str, Any]) -> list[str]:
    """The ``sweep`` node's values are in range and its sizes exist (``efm scale``)."""
    from efm.scale.config import problems

    return problems(cfg)


@checker(paths=True)
def _data_root(cfg: dict[str, Any]) -> list[str]:
    """``data.root`` exists (else the run would fail after its set-up)."""
    root = cfg["data"].get("root")
    if root in (None, "") or Path(str(root)).expanduser().exists():
        return []
    return [
        f"data.root={root!r}: no such file or directory (give the folder of the recordings, "
        f"or leave data.root unset for the embedded demo corpus)"
    ]


@checker(paths=True)
def _pipeline_files(cfg: dict[str, Any]) -> list[str]:
    """``pipeline.regions`` and ``pipeline.taxonomy`` files exist and load."""
    from efm.data import montage, taxonomy

    problems: list[str] = []
    loaders: dict[str, Callable[[str], Any]] = {
        "regions": montage.load_regions,
        "taxonomy": taxonomy.load,
    }
    for key, load in loaders.items():
        source = str(cfg["pipeline"][key])
        if source == "default":
            continue
        if not Path(source).is_file():
            problems.append(f"pipeline.{key}={source!r}: no such file (or use 'default')")
            continue
        try:
            load(source)
        except ConfigError as exc:
            problems += exc.problems
    return problems


@checker("pipeline", "representation", "backbone", "objective", paths=True)
def _assembly(cfg: dict[str, Any]) -> list[str]:
    """The model assembles from what the representation gives it (:func:`efm.assemble.check`:
    derived shapes, then the backbone and objective built on the meta device; no data read).

    Runs with the checks of a run on this machine (``efm validate``, ``run``, ``pretrain``,
    ``prepare``), not on every ``compose``: building on the meta device costs tenths of a second.
    """
    from efm.assemble import check as assembly_check

    return assembly_check(cfg)
