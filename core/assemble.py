"""Assembly: the one place where representation, backbone and objective meet (ARCHITECTURE.md §7a).

The pipeline decides the data's shape (``sfreq``, epoch length, channels); the representation is
built for it and states its output shape (``output_shape(n_chans, n_times)``); the backbone is built
for that shape; the objective composes the two. No number is carried between recipe nodes by hand:
an option that follows from another node is *derived* when it is left at None, and an explicit value
that disagrees is an error naming both keys.

Derived options, by name (the shared vocabulary; a plugin's schema opts in by having the field):

=================  =========  ==============================================================
node               option     derived from
=================  =========  ==============================================================
representation     sfreq      ``pipeline.sfreq``
representation     n_times    ``pipeline.epoch_s x pipeline.sfreq``
backbone (image)   in_chans   the representation's output ``[C, H, W]`` (``[R, C, H, W]``: R)
backbone (image)   input_size its ``(H, W)`` (``(C, H, W)`` for stacked representations: 3D)
backbone (token)   patch_len  its patch length (``representation.patch_s x pipeline.sfreq``)
backbone (token)   embed_window  the longest training crop in patches (``train.crops_s``); 0
objective          max_hz     ``min(pipeline.sfreq / 2, pipeline.h_freq)`` (an upper bound)
=================  =========  ==============================================================

>>> from efm.assemble import assemble, check
>>> objective = assemble(cfg)                 # doctest: +SKIP
>>> check(cfg)                                # every problem, one line each; builds on meta  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from efm import registry
from efm.errors import ConfigError, EfmError

log = logging.getLogger("efm.assemble")

__all__ = ["DataSpec", "Plan", "assemble", "check", "data_spec", "plan", "require"]


@dataclass(frozen=True)
class DataSpec:
    """The shape of the data the model reads, decided by the pipeline.

    Parameters
    ----------
    sfreq : float
        Sampling frequency of the epochs (``pipeline.sfreq``).
    n_times : int
        Samples per epoch (``pipeline.epoch_s x pipeline.sfreq``).
    n_chans : int | None
        Channels per epoch: the number of regions on the ``eeg`` path; None when only the data
        knows it (``ieeg`` keeps every channel) and it was not given.
    h_freq : float | None
        The pipeline's low-pass edge (``pipeline.h_freq``), None when there is none.
    crops_s : tuple of float
        Training crop lengths in seconds (``train.crops_s``).
    n_chans_source : str
        Where ``n_chans`` comes from, for messages (``pipeline.regions``, a manifest ...).
    """

    sfreq: float
    n_times: int
    n_chans: int | None = None
    h_freq: float | None = None
    crops_s: tuple[float, ...] = ()
    n_chans_source: str = field(default="the data's channel count", compare=False)


def data_spec(cfg: dict[str, Any], n_chans: int | None = None) -> DataSpec:
    """The :class:`DataSpec` of a resolved config; ``n_chans`` (e.g. from a manifest) wins."""
    p = cfg.get("pipeline") or {}
    sfreq = float(p.get("sfreq", 250.0))
    epoch_s = float(p.get("epoch_s", 30.0))
    source = "the shards' channel count"
    if n_chans is None and p.get("path", "eeg") == "eeg":
        from efm.data.montage import load_regions

        n_chans = len(load_regions(str(p.get("regions", "default"))))
        source = "pipeline.regions"
    h_freq = p.get("h_freq", 100.0)
    crops = (cfg.get("train") or {}).get("crops_s") or []
    return DataSpec(
        sfreq=sfreq,
        n_times=round(epoch_s * sfreq),
        n_chans=None if n_chans is None else int(n_chans),
        h_freq=None if h_freq in (None, 0) else float(h_freq),
        crops_s=tuple(float(c) for c in crops),
        n_chans_source=source,
    )


@dataclass
class Plan:
    """The options every component is built with, after derivation, and the shapes between them."""

    names: dict[str, str]  # node -> registered name
    options: dict[str, dict[str, Any]]  # node -> options (derived ones filled in)
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> derived values
    output_shape: tuple[int, ...] = ()  # one sample of the representation's output
    family: str = ""
    problems: list[str] = field(default_factory=list)


def _node(cfg: dict[str, Any], node: str) -> tuple[str, dict[str, Any]]:
    given = cfg.get(node)
    if isinstance(given, str):
        given = {"name": given}
    given = dict(given or {})
    if "name" not in given:
        raise EfmError(f"recipe {cfg.get('recipe')!r} has no {node} node")
    return str(given.pop("name")), given


def _fields(comp: registry.Component) -> set[str]:
    return set(registry.schema_fields(comp.schema))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _show(v: Any) -> str:
    return str(list(v)) if isinstance(v, (list, tuple)) else repr(v)


def _derive(plan: Plan, node: str, key: str, value: Any, source: str, why: str = "") -> None:
    """Fill ``node.key`` with ``value`` when it is None; record a problem when it disagrees."""
    opts = plan.options[node]
    given = opts.get(key)
    if given is None:
        opts[key] = value
        plan.derived.setdefault(node, {})[key] = value
    elif not _same(given, value):
        plan.problems.append(
            f"{node}.{key}={_show(given)} disagrees with {source}, which gives {_show(value)}"
            f"{why}; remove {node}.{key} (None = derived) or change "
            + source.replace(" x ", " or ").replace(" / patch_len", "")
        )


def plan(cfg: dict[str, Any], data: DataSpec | None = None) -> tuple[Plan, Any]:
    """Derive every option and build the representation; return the plan and the representation.

    Problems (disagreeing explicit values, impossible shapes) are collected in ``plan.problems``;
    errors raised by the representation's own constructor propagate. A config with only a
    ``representation`` node plans the representation alone (the tokenizer suite does).
    """
    data = data or data_spec(cfg)
    names, options = {}, {}
    for node in ("representation", "backbone", "objective"):
        if node == "representation" or cfg.get(node):  # a representation alone is planned too
            names[node], options[node] = _node(cfg, node)
    p = Plan(names, options)

    # representation <- pipeline
    rep_comp = registry.get("tokenizers", names["representation"])
    rep_fields = _fields(rep_comp)
    if "sfreq" in rep_fields:
        _derive(p, "representation", "sfreq", data.sfreq, "pipeline.sfreq")
    if "n_times" in rep_fields:
        _derive(
            p,
            "representation",
            "n_times",
            data.n_times,
            "pipeline.epoch_s x pipeline.sfreq",
        )
    rep = registry.create("tokenizers", rep_comp.name, **options["representation"])
    family = str(getattr(rep, "family", rep_comp.meta.get("family", "image")))
    p.family = family
    if not callable(getattr(rep, "output_shape", None)):  # cannot state its shape: no derivation
        return p, rep
    n_chans = data.n_chans or 1
    shape = tuple(int(s) for s in rep.output_shape(n_chans, data.n_times))
    # the dimensions that follow the channel count (unknown when the data alone knows it)
    per_chan = [
        a != b for a, b in zip(shape, rep.output_shape(n_chans + 1, data.n_times), strict=False)
    ]
    p.output_shape = shape
    if "backbone" not in names:
        return p, rep

    # backbone <- the representation's output
    bb_comp = registry.get("backbones", names["backbone"])
    bb_fields = _fields(bb_comp)
    where = f"the output {list(shape)} of representation {rep_comp.name!r}"
    if family == "image" and len(shape) in (3, 4):
        if "input_size" in bb_fields:
            src = (
                "representation.output_size"
                if "output_size" in rep_fields
                else f"representation {rep_comp.name!r}"
            )
            if len(shape) == 4:
                src += f" and {data.n_chans_source}"
            if not (len(shape) == 4 and per_chan[1] and data.n_chans is None):
                _derive(p, "backbone", "input_size", list(shape[1:]), src, f" ({where})")
        if "in_chans" in bb_fields and not (per_chan[0] and data.n_chans is None):
            if len(shape) == 4:
                src = "representation.names" if "names" in rep_fields else "the stacked outputs"
            elif per_chan[0]:
                src = data.n_chans_source
            else:
                src = f"representation {rep_comp.name!r}"
            _derive(p, "backbone", "in_chans", shape[0], src, f" ({where})")
    elif family == "token" and len(shape) >= 1:
        patch_len = shape[-1]
        if "patch_len" in bb_fields:
            src = (
                "representation.patch_s x pipeline.sfreq"
                if "patch_s" in rep_fields
                else f"representation {rep_comp.name!r}"
            )
            _derive(p, "backbone", "patch_len", patch_len, src)
        if "embed_window" in bb_fields:
            window = 0
            if data.crops_s:
                longest = max(round(c * data.sfreq) for c in data.crops_s)
                window = longest // patch_len
                if window < 1:
                    p.problems.append(
                        f"train.crops_s={list(data.crops_s)}: the longest crop ({longest} samples) "
                        f"holds no {patch_len}-sample patch"
                    )
            _derive(
                p,
                "backbone",
                "embed_window",
                window,
                "train.crops_s x pipeline.sfreq / patch_len" if data.crops_s else "train.crops_s",
            )
    if "objective" not in names:
        return p, rep
    obj_comp = registry.get("objectives", names["objective"])
    if "max_hz" in _fields(obj_comp):
        nyquist = data.sfreq / 2
        bound, src = nyquist, "pipeline.sfreq / 2"
        if data.h_freq is not None and data.h_freq < nyquist:
            bound, src = data.h_freq, "pipeline.h_freq"
        given = options["objective"].get("max_hz")
        if given is None:
            options["objective"]["max_hz"] = bound
            p.derived.setdefault("objective", {})["max_hz"] = bound
        else:
            if float(given) > nyquist:
                p.problems.append(
                    f"objective.max_hz={given} is above pipeline.sfreq / 2 = {nyquist:g} Hz; "
                    f"lower it or remove it (derived: {bound:g})"
                )
            if data.h_freq is not None and float(given) > data.h_freq:
                p.problems.append(
                    f"objective.max_hz={given} is above pipeline.h_freq={data.h_freq:g} (the "
                    f"targets would hold filtered-out bands); lower it or remove it "
                    f"(derived: {bound:g})"
                )
    return p, rep


def _objective(plan: Plan, representation: Any, backbone: Any) -> Any:
    comp = registry.get("objectives", plan.names["objective"])
    return comp.builder(
        backbone=backbone,
        representation=representation,
        **(comp.defaults() | plan.options["objective"]),
    )


def assemble(cfg: dict[str, Any], data: DataSpec | None = None) -> Any:
    """Build representation -> backbone -> objective from a resolved config and the data's shape.

    Parameters
    ----------
    cfg : dict
        A resolved config (``efm.config.compose``) with ``representation``, ``backbone`` and
        ``objective`` nodes (and ``pipeline`` / ``train`` for the data's shape).
    data : DataSpec, optional
        The data's shape; default :func:`data_spec` of ``cfg`` (give ``n_chans`` from a manifest
        when the pipeline alone does not decide it).

    Returns
    -------
    nn.Module
        The objective, holding ``.backbone`` and ``.representation``. Components are built in that
        order (representation, backbone, objective), so a seeded build is reproducible.

    Raises
    ------
    ConfigError
        Every disagreement between an explicit option and its derived value, at once.
    """
    p, rep = plan(cfg, data)
    if p.problems:
        raise ConfigError(p.problems)
    derived = [f"{n}.{k}={_show(v)}" for n, kv in p.derived.items() for k, v in kv.items()]
    log.info("assembled for output %s: %s", list(p.output_shape), ", ".join(derived) or "-")
    backbone = registry.create("backbones", p.names["backbone"], **p.options["backbone"])
    return _objective(p, rep, backbone)


def _lines(exc: Exception) -> list[str]:
    if isinstance(exc, ConfigError):
        return [str(x) for x in getattr(exc, "problems", [str(exc)])]
    return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]


def check(cfg: dict[str, Any], data: DataSpec | None = None) -> list[str]:
    """Every assembly problem of ``cfg``, one line each, without reading data or real weights.

    Runs :func:`plan`, then builds the backbone and objective on the ``meta`` device (shapes only,
    no memory, no checkpoint loading) and runs the backbone once on a meta tensor of the
    representation's output shape, so shape errors surface here rather than at the first batch.
    """
    import torch

    if not all(cfg.get(node) for node in ("representation", "backbone", "objective")):
        return []  # nothing to assemble (a recipe for `efm prepare` alone)
    if data is None:
        try:
            data = data_spec(cfg)
        except EfmError as exc:
            return _lines(exc)
    try:
        p, rep = plan(cfg, data)
    except (EfmError, ValueError, TypeError) as exc:
        return [f"representation: {line}" for line in _lines(exc)]
    if p.problems or not p.output_shape:
        return list(p.problems)
    # Below, only errors that the components' own validation raises are problems; anything else
    # (an operation the meta device does not support, a stub component) is left to the run.
    name = p.names["backbone"]
    opts = dict(p.options["backbone"])
    for key in ("diver_checkpoint", "checkpoint", "pretrained"):  # no real weights here
        if opts.get(key):
            opts[key] = None
    try:
        with torch.device("meta"):
            backbone = registry.create("backbones", name, **opts)
    except (EfmError, ValueError) as exc:
        return [f"backbone {name!r}: {line}" for line in _lines(exc)]
    except Exception as exc:  # noqa: BLE001 - see above
        return _unchecked(f"building backbone {name!r}", exc)
    if p.family == "image" and isinstance(backbone, torch.nn.Module):
        try:
            with torch.no_grad():
                backbone(torch.empty(2, *p.output_shape, device="meta"))
        except NotImplementedError:
            pass
        except (EfmError, ValueError, RuntimeError) as exc:
            return [f"backbone {name!r}: {line}" for line in _lines(exc)]
        except Exception as exc:  # noqa: BLE001 - see above
            return _unchecked(f"running backbone {name!r}", exc)
    try:
        with torch.device("meta"):
            _objective(p, rep.to("meta") if isinstance(rep, torch.nn.Module) else rep, backbone)
    except (EfmError, ValueError) as exc:
        return [f"objective {p.names['objective']!r}: {line}" for line in _lines(exc)]
    except Exception as exc:  # noqa: BLE001 - see above
        return _unchecked(f"building objective {p.names['objective']!r}", exc)
    return []


def _unchecked(what: str, exc: Exception) -> list[str]:
    """Not a config problem, but say that the shape check stopped (never silently)."""
    log.warning(
        "assembly check: %s on the meta device failed (%s: %s); the remaining shapes are "
        "checked at the first batch",
        what,
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    return []


def require(cfg: dict[str, Any]) -> None:
    """Raise one :class:`ConfigError` with every :func:`check` problem (before any data is read)."""
    problems = check(cfg)
    if problems:
        raise ConfigError(problems)
