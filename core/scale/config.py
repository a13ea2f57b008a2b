"""Schema of the ``sweep`` recipe node (``efm scale``) and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class SweepConfig:
    """A grid of pretraining runs for scaling-law fits (``efm scale``, :mod:`efm.scale`).

    ``sizes``: registered backbone names (``hiera_test``), or option sets of the recipe's backbone
    written ``key=value,key=value`` (``d_model=128,n_heads=4``: widths under muP); empty: the
    recipe's backbone alone. ``data_fractions``: fractions (0, 1] of the training recordings
    (nested: a smaller fraction's recordings are part of every larger one). ``epochs``: passes over
    that data (repetition; fractional values allowed), which set each run's ``train.steps``.
    ``split_by``: the unit of the held-out split and of the fractions, whole patients (subjects) or
    whole recordings; ``val_fraction`` of the units (at least one) are held out for the validation
    loss, the same for every run. ``val_max_epochs`` caps the held-out epochs scored (0: all).
    ``executor``: ``local`` (submitit's LocalExecutor, one subprocess per run), ``slurm``
    (submitit's Slurm executor, ``submitit`` options such as ``slurm_partition`` or
    ``timeout_min`` in ``launcher``), ``debug`` (submitit's in-process debug executor) or
    ``inline`` (in this process, no submitit needed). ``out``: the sweep folder (default
    ``sweeps/<recipe>-<profile>-<hash>``). ``probe``: also run the recipe's linear probes per run.
    """

    sizes: list[str] = field(default_factory=list)
    data_fractions: list[float] = field(default_factory=lambda: [1.0])
    epochs: list[float] = field(default_factory=lambda: [1.0])
    split_by: Literal["patient", "recording"] = "patient"
    val_fraction: float = field(default=0.2, metadata={"gt": 0, "lt": 1})
    val_max_epochs: int = field(default=512, metadata={"ge": 0})
    seed: int = 0
    executor: Literal["local", "slurm", "debug", "inline"] = "local"
    max_parallel: int = field(default=1, metadata={"ge": 1})
    launcher: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    probe: bool = False
    n_boot: int = field(default=200, metadata={"ge": 0})


def parse_size(size: str) -> tuple[str | None, dict[str, str]]:
    """``"hiera_test"`` -> ``("hiera_test", {})``; ``"d_model=64,n_heads=2"`` -> ``(None, {...})``."""
    if "=" not in size:
        return size.strip(), {}
    options = {}
    for part in size.split(","):
        key, _, value = part.partition("=")
        options[key.strip()] = value.strip()
    return None, options


def problems(cfg: dict[str, Any]) -> list[str]:
    """The sweep node's problems beyond its types: values in range, sizes that exist."""
    from efm import registry
    from efm.errors import UnknownNameError

    s = cfg.get("sweep") or {}
    out = []
    bad = [f for f in s.get("data_fractions", []) if not 0 < f <= 1]
    if bad:
        out.append(f"sweep.data_fractions={bad}: each must be in (0, 1]")
    bad = [e for e in s.get("epochs", []) if not e > 0]
    if bad:
        out.append(f"sweep.epochs={bad}: each must be > 0")
    for key in ("sizes", "data_fractions", "epochs"):
        values = list(s.get(key, []))
        if len(set(map(str, values))) != len(values):
            out.append(f"sweep.{key}={values}: values repeat")
    backbone = (cfg.get("backbone") or {}).get("name")
    for size in s.get("sizes", []):
        name, options = parse_size(str(size))
        if name is not None:
            try:
                registry.get("backbones", name)
            except UnknownNameError as exc:
                out.append(f"sweep.sizes: {exc}")
            continue
        try:
            known = set(registry.get("backbones", str(backbone)).defaults())
        except UnknownNameError:
            continue  # reported for the backbone node
        unknown = sorted(set(options) - known)
        if unknown:
            out.append(
                f"sweep.sizes: {size!r} sets {', '.join(unknown)}, not options of backbone "
                f"{backbone!r} (its options: {', '.join(sorted(known))})"
            )
    return out
