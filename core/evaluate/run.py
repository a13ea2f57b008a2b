"""``efm probe``: linear probes of a run's frozen encoder, written into its report.

efm probe --run-dir runs/epi250k-demo-1a2b3c4d            # the run's config and newest checkpoint
efm probe recipe=epi250k --checkpoint PATH [overrides]
efm probe recipe=epi250k --random-init                    # the untrained-encoder baseline
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError, UsageError

log = logging.getLogger("efm.evaluate.run")


def load_encoder(cfg: dict[str, Any], checkpoint: str | Path | None) -> Any:
    """The recipe's objective (representation + backbone) with the checkpoint's weights, if given."""

    from efm.assemble import assemble
    from efm.evaluate.adapt import seeded
    from efm.train import checkpoint as ckpt

    with seeded(int(cfg["train"]["seed"])):
        objective = assemble(cfg)
    if checkpoint is not None:
        ckpt.load_weights(Path(checkpoint), objective)
    return objective


def probe(
    cfg: dict[str, Any],
    shards: str | Path,
    run_dir: str | Path,
    checkpoint: str | Path | None,
    name: str = "pretrained",
) -> dict[str, Any]:
    """Embed every epoch with the frozen encoder, cache the embeddings, probe ``eval.tasks``."""
    import torch

    from efm.evaluate.probe import embed_shards, probe_tasks
    from efm.train.loop import autocast_dtype

    ev = cfg["eval"]
    run_dir = Path(run_dir)
    objective = load_encoder(cfg, checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = autocast_dtype(str(cfg["train"]["precision"]), device)
    x, metas = embed_shards(
        objective, shards, int(ev["batch_size"]), int(ev["max_epochs"]), device, amp
    )
    from efm.data.sources import config_hash

    digest = config_hash(cfg)
    cache = run_dir / "embeddings" / f"{name}.npz"
    if cache.is_file():  # embeddings of other data are kept: this data gets its own file
        with np.load(cache) as old:
            before = str(old["data_hash"]) if "data_hash" in old.files else ""
        if before != digest:
            cache = cache.with_name(f"{name}-{digest}.npz")
    cache.parent.mkdir(parents=True, exist_ok=True)
    labels = sorted({t for m in metas for t in (m.get("labels") or {}) if t not in ("events",)})
    arrays: dict[str, Any] = {
        "x": x,
        "patient_id": np.array([str(m.get("patient_id")) for m in metas]),
        "key": np.array([str(m.get("key")) for m in metas]),
        "start_s": np.array([float(m.get("start_s", 0.0)) for m in metas]),
        "data_hash": np.array(digest),
    }
    for t in labels:  # -1: no label of that task
        values = [(m.get("labels") or {}).get(t) for m in metas]
        arrays[f"label_{t}"] = np.array([v if isinstance(v, int) else -1 for v in values])
    np.savez_compressed(cache, **arrays)
    from efm.evaluate.task import split_names

    results = probe_tasks(x, metas, split_names(list(ev["tasks"]))[0], ev)
    return {
        "encoder": name,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "embed_dim": int(x.shape[1]),
        "embeddings": str(cache),
        "tasks": results,
    }


def summary_lines(probes: dict[str, Any]) -> list[str]:
    """One line per probed task: kappa, balanced accuracy and AUROC with their spread."""
    out = []
    for task, r in probes.items():
        if "skipped" in r:
            out.append(f"probe {task}: skipped ({r['skipped']})")
            continue
        m, s = r["mean"], r["std"]
        out.append(
            f"probe {task}: kappa {m['kappa']:.3f} ± {s['kappa']:.3f}, balanced accuracy "
            f"{m['balanced_accuracy']:.3f} ± {s['balanced_accuracy']:.3f}, AUROC "
            f"{m['auroc']:.3f} ± {s['auroc']:.3f} ({len(r['per_seed'])} patient-level splits, "
            f"{r['n_patients']} patients)"
        )
    return out


def _shortcuts(argv: list[str]) -> list[str]:
    """``run_dir=D checkpoint=P random_init=true`` as options (``efm prepare``'s key=value style)."""
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key in ("run_dir", "checkpoint") and sep:
            out += [f"--{key.replace('_', '-')}", value]
        elif key == "random_init" and value.lower() in ("", "true", "1", "yes"):
            out.append("--random-init")
        else:
            out.append(arg)
    return out


def cli(argv: list[str]) -> int:
    """``efm probe`` entry point (raw argv after the subcommand)."""
    from efm.cli import plain
    from efm.config import compose, validate

    p = argparse.ArgumentParser(
        prog="efm probe", description=plain((__doc__ or "").split("\n\n")[0])
    )
    p.add_argument("--run-dir", help="a run directory (its config.yaml and newest checkpoint)")
    p.add_argument("--checkpoint", help="a checkpoint directory or model.safetensors file")
    p.add_argument("--random-init", action="store_true", help="probe the untrained encoder")
    p.add_argument("overrides", nargs="*", metavar="recipe=NAME key=value")
    args = p.parse_intermixed_args(_shortcuts(argv))  # overrides before or after flags
    own: dict[str, Any] | None = None
    if args.run_dir and not any(o.startswith("recipe=") for o in args.overrides):
        import yaml

        from efm.evaluate.cli import load_config

        path = Path(args.run_dir) / "config.yaml"
        if not path.is_file():
            raise UsageError(f"{args.run_dir} has no config.yaml: is it an efm run directory?")
        own = validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        cfg = load_config(args.run_dir, args.overrides)  # data.root=... points it at new data
    elif args.overrides:
        cfg = compose(args.overrides)
    else:
        raise UsageError(
            "usage: efm probe --run-dir DIR | efm probe recipe=NAME [--checkpoint PATH]"
        )
    from efm.data import ensure_shards
    from efm.train import checkpoint as ckpt
    from efm.train.rundir import default_run_dir

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    checkpoint: Path | None = None
    if not args.random_init:
        checkpoint = Path(args.checkpoint) if args.checkpoint else ckpt.latest(run_dir)
        if checkpoint is None:
            raise EfmError(
                f"no checkpoint in {run_dir}; train first (`efm pretrain ...`), pass "
                "checkpoint=PATH, or random_init=true for the untrained baseline"
            )
    shards = Path(ensure_shards(cfg))
    name = "random_init" if args.random_init else "pretrained"
    from efm.data.sources import config_hash

    if own is not None and config_hash(own) != config_hash(cfg):  # other data: its own folder
        from efm.evaluate.cli import fresh_dir

        run_dir = fresh_dir(run_dir / "probe" / config_hash(cfg))
        sys.stdout.write(f"probing other data than the run's: writing {run_dir}\n")
    result = probe(cfg, shards, run_dir, checkpoint, name)
    from efm.evaluate.report import write_report

    report_path = run_dir / "report.json"
    report = (
        json.loads(report_path.read_text()) if report_path.is_file() else {"recipe": cfg["recipe"]}
    )
    report.setdefault("encoders", {})[name] = result
    if name == "pretrained" or "probes" not in report:
        report["probes"] = result["tasks"]
    md, _ = write_report(run_dir, report)
    for line in summary_lines(result["tasks"]):
        sys.stdout.write(line + "\n")
    sys.stdout.write(f"report: {md}\n")
    return 0
