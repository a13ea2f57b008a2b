"""The sweep grid: data views by whole patients or recordings, and one config per run.

A **data view** is a shard directory whose ``manifest.json`` lists a subset of a prepared
directory's shards by absolute path (no signal is copied): ``SWEEP/data/val`` holds the held-out
units (patients or recordings, ``sweep.split_by``), ``SWEEP/data/train-f<fraction>`` the first
``fraction`` of the other units in a seeded order, so smaller fractions are nested in larger ones.
A shard belongs to one recording (``efm prepare`` writes one shard group per file); a manifest that
does not name recordings (synthetic shards) is split by shard.

A **run** is one (size, fraction, epochs) point: the recipe's config with the size's backbone,
``train.steps = round(epochs * U / batch_size)`` (``U``: the view's distinct samples), whole
passes over the shards (``train.resampled=false``) and its own run directory
``SWEEP/runs/<label>-<hash>``, where the hash covers the run's config and its data view, so a
changed grid or recipe never reuses a stale run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from efm.errors import UsageError
from efm.scale.config import parse_size


@dataclass
class RunSpec:
    """One run of the sweep (everything a worker needs; plain data, so it pickles)."""

    label: str
    size: str
    fraction: float
    epochs: float
    unique: int  # distinct samples in the run's data view (U)
    steps: int
    batch_size: int
    shards: str  # the run's data view
    val_shards: str
    run_dir: str
    key: str  # hash of the config and the data view
    cfg: dict[str, Any]
    probe: bool = False
    val_max_epochs: int = 0  # held-out epochs scored (0: all)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _units(manifest: dict[str, Any], split_by: str) -> dict[str, list[dict[str, Any]]]:
    """Shard entries grouped by patient or recording (by shard when the manifest names neither)."""
    key = "patient_id" if split_by == "patient" else "recording_id"
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["shards"]:
        if int(entry.get("n_epochs", 1)) <= 0:
            continue
        unit = entry.get(key) or entry.get("recording_id") or entry["path"]
        groups.setdefault(str(unit), []).append(entry)
    return groups


def write_view(src: Path, out: Path, entries: list[dict[str, Any]], info: dict[str, Any]) -> Path:
    """A manifest at ``out`` listing ``entries`` of the prepared directory ``src`` by absolute path."""
    from efm.data.shards import read_manifest

    base = read_manifest(src)
    shards = [{**e, "path": str((src / e["path"]).resolve())} for e in entries]
    manifest = {k: v for k, v in base.items() if k not in ("urls", "shards")}
    manifest.update(
        shards=shards,
        n_epochs=sum(int(e["n_epochs"]) for e in shards),
        n_recordings=len({e.get("recording_id", e["path"]) for e in shards}),
        n_patients=len({e.get("patient_id", e["path"]) for e in shards}),
        view_of=str(src.resolve()),
        **info,
    )
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=1, sort_keys=True)
    path = out / "manifest.json"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = out / "manifest.json.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return out


def data_views(
    shards: Path, sweep_dir: Path, sweep: dict[str, Any]
) -> tuple[Path, dict[float, Path]]:
    """Write the held-out view and one training view per fraction; return their folders."""
    from efm.data.shards import read_manifest

    manifest = read_manifest(shards)
    units = _units(manifest, sweep["split_by"])
    names = sorted(units)
    if len(names) < 2:
        raise UsageError(
            f"{shards} holds {len(names)} {sweep['split_by']}(s): a sweep needs at least two, one "
            "held out for the validation loss and one to train on (sweep.split_by=recording "
            "splits by recordings instead)"
        )
    random.Random(f"sweep-{sweep['seed']}").shuffle(names)
    n_val = min(len(names) - 1, max(1, round(sweep["val_fraction"] * len(names))))
    val, pool = names[:n_val], names[n_val:]
    val_dir = write_view(
        shards, sweep_dir / "data" / "val", [e for u in val for e in units[u]], {"units": val}
    )
    views = {}
    for fraction in sweep["data_fractions"]:
        take = pool[: max(1, round(fraction * len(pool)))]
        views[float(fraction)] = write_view(
            shards,
            sweep_dir / "data" / f"train-f{fraction:g}",
            [e for u in take for e in units[u]],
            {"units": take, "fraction": fraction},
        )
    return val_dir, views


def _label(size: str, fraction: float, epochs: float) -> str:
    name, options = parse_size(size)
    tag = name or "-".join(f"{k}{v}" for k, v in options.items())
    return f"{tag}-f{fraction:g}-e{epochs:g}".replace("/", "_")


def run_config(base: dict[str, Any], size: str, steps: int) -> dict[str, Any]:
    """The recipe's resolved config with the size's backbone and the run's step count."""
    from efm.config import _choose, validate

    cfg = copy.deepcopy(base)
    cfg.pop("sweep", None)
    name, options = parse_size(size)
    if name is not None:
        _choose(cfg, "backbone", name)
    else:
        import yaml

        for key, value in options.items():
            cfg["backbone"][key] = yaml.safe_load(value)
    cfg["train"]["steps"] = int(steps)
    cfg["train"]["resampled"] = False  # whole passes: epochs are repetitions of the data
    cfg["train"]["num_workers"] = min(int(cfg["train"]["num_workers"]), 1)
    cfg["train"]["progress"] = False
    return validate(cfg)


def expand(
    base: dict[str, Any], sweep_dir: Path, val_dir: Path, views: dict[float, Path]
) -> list[RunSpec]:
    """Every (size, fraction, epochs) run of the grid, sizes outermost."""
    from efm.data.shards import read_manifest
    from efm.train.rundir import config_hash

    sweep = base["sweep"]
    sizes = list(sweep["sizes"]) or [str(base["backbone"]["name"])]
    batch = int(base["train"]["batch_size"])
    val_units = json.loads((val_dir / "manifest.json").read_text(encoding="utf-8"))["units"]
    specs = []
    for size in sizes:
        for fraction in sweep["data_fractions"]:
            view = views[float(fraction)]
            unique = int(read_manifest(view)["n_epochs"])
            if unique < batch:
                raise UsageError(
                    f"sweep.data_fractions={fraction:g} gives {unique} training epochs, fewer than "
                    f"one batch (train.batch_size={batch}): raise the fraction or lower the batch"
                )
            for epochs in sweep["epochs"]:
                steps = max(1, round(epochs * unique / batch))
                cfg = run_config(base, size, steps)
                units = json.loads((view / "manifest.json").read_text(encoding="utf-8"))["units"]
                # the held-out split and how much of it is scored change the recorded loss too
                scored = [val_units, int(sweep["val_max_epochs"])]
                ident = json.dumps([config_hash(cfg), units, *scored], sort_keys=True)
                key = hashlib.sha256(ident.encode()).hexdigest()[:10]
                label = _label(size, float(fraction), float(epochs))
                run_dir = sweep_dir / "runs" / f"{label}-{key}"
                cfg["train"]["run_dir"] = str(run_dir)
                specs.append(
                    RunSpec(
                        label=label,
                        size=size,
                        fraction=float(fraction),
                        epochs=float(epochs),
                        unique=unique,
                        steps=steps,
                        batch_size=batch,
                        shards=str(view),
                        val_shards=str(val_dir),
                        run_dir=str(run_dir),
                        key=key,
                        cfg=cfg,
                        probe=bool(sweep["probe"]),
                        val_max_epochs=int(sweep["val_max_epochs"]),
                    )
                )
    return specs


def sweep_dir(cfg: dict[str, Any]) -> Path:
    """``sweep.out``, else ``sweeps/<recipe>-<profile>-<hash of the recipe and grid>``."""
    from efm.train.rundir import config_hash

    out = cfg["sweep"].get("out")
    if out:
        return Path(out)
    grid = {k: cfg["sweep"][k] for k in ("sizes", "data_fractions", "epochs", "split_by", "seed")}
    ident = f"{config_hash(cfg)}-{json.dumps(grid, sort_keys=True)}"
    tag = hashlib.sha256(ident.encode()).hexdigest()[:8]
    profile = cfg.get("data", {}).get("profile", "auto")
    return Path.cwd() / "sweeps" / f"{cfg.get('recipe', 'sweep')}-{profile}-{tag}"


def check_grid(sweep: dict[str, Any]) -> list[str]:
    """Refuse a grid that cannot constrain any fit; return warnings for a narrow one."""
    from efm.scale.fit import DegenerateGridError

    sizes = len(sweep["sizes"]) or 1
    counts = {
        "sizes": sizes,
        "data_fractions": len(sweep["data_fractions"]),
        "epochs": len(sweep["epochs"]),
    }
    if all(n < 2 for n in counts.values()):
        raise DegenerateGridError(
            "the sweep grid has one size, one data fraction and one epoch count: no scaling law "
            "can be fitted to a single run; give two or more values to sweep.sizes, "
            "sweep.data_fractions or sweep.epochs"
        )
    warn = [
        f"sweep.{k} has one value: fits along it (and L(N, D)) are skipped"
        for k, n in counts.items()
        if n < 2
    ]
    if sizes * counts["data_fractions"] * counts["epochs"] < 4:
        warn.append("fewer than 4 runs: power-law fits need at least 3 and parametric fits 6")
    if math.prod(counts.values()) and counts["epochs"] >= 2 and max(sweep["epochs"]) <= 1:
        warn.append("every epoch count is <= 1: the data-constrained fit needs repetition")
    return warn
