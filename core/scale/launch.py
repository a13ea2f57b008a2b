"""Running a sweep's runs: each through ``efm run``'s engine, launched by submitit, cached.

:func:`run_one` pretrains one run with :func:`efm.train.loop.pretrain` (which resumes from the run's
newest checkpoint), then measures it (:mod:`efm.scale.measure`) and writes ``RUN/result.json``
last, atomically: a run with a ``result.json`` whose key matches is finished and is skipped by
:func:`launch`, so a killed sweep started again resumes where it stopped, and a run killed midway
continues from its checkpoint.

Executors (``sweep.executor``): ``local`` and ``slurm`` are submitit's LocalExecutor (one
subprocess per run) and Slurm executor, ``debug`` is submitit's in-process debug executor, ``inline``
runs in this process without submitit (the fallback when the ``scale`` extra is not installed).
A run that fails is logged with its reason; the sweep goes on with the others.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from efm.errors import EfmError
from efm.scale.grid import RunSpec

log = logging.getLogger("efm.scale.launch")

RESULT = "result.json"


def finished(spec: RunSpec) -> dict[str, Any] | None:
    """The run's recorded result when it finished with the same key, else None."""
    path = Path(spec.run_dir) / RESULT
    if not path.is_file():
        return None
    try:
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        log.warning("%s is damaged; the run is measured again", path)
        return None
    return result if result.get("key") == spec.key else None


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Pretrain, measure and record one run (the function submitit runs); returns its result."""
    import torch

    from efm.assemble import assemble, data_spec
    from efm.scale import measure
    from efm.train import checkpoint as ckpt
    from efm.train.loader import iter_epochs, read_manifest
    from efm.train.loop import pretrain, to_device

    s = RunSpec(**spec)
    done = finished(s)
    if done is not None:
        return done
    cfg, run_dir = s.cfg, Path(s.run_dir)
    t0 = time.perf_counter()
    trained = pretrain(cfg, s.shards, run_dir)
    train_s = time.perf_counter() - t0

    manifest = read_manifest(s.shards)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    objective = assemble(cfg, data_spec(cfg, manifest.get("n_chans") or None)).to(device)
    if trained.checkpoint is None:
        raise EfmError(f"run {s.label} left no checkpoint in {run_dir}")
    ckpt.load_weights(trained.checkpoint, objective)
    backbone = getattr(objective, "backbone", objective)
    batch = to_device(next(iter(iter_epochs(s.val_shards, 2))), device)
    objective.train()
    per_sample = measure.training_flops_per_sample(objective, batch)
    t1 = time.perf_counter()
    val = measure.validation_loss(
        objective,
        s.val_shards,
        int(cfg["eval"]["batch_size"]),
        s.val_max_epochs,
        seed=int(cfg["train"]["seed"]),
    )
    samples = s.steps * s.batch_size
    result: dict[str, Any] = {
        "label": s.label,
        "key": s.key,
        "size": s.size,
        "backbone": cfg["backbone"]["name"],
        "fraction": s.fraction,
        "epochs": s.epochs,
        "steps": s.steps,
        "batch_size": s.batch_size,
        "N": measure.non_embedding_params(backbone),
        "n_total": measure.count_params(objective),
        "D": samples,
        "U": s.unique,
        "epochs_seen": samples / s.unique,
        "flops_per_sample": per_sample,
        "C": per_sample * samples,
        "wall_s": train_s,
        "val_s": time.perf_counter() - t1,
        "train_loss": trained.losses[-1] if trained.losses else float("nan"),
        "val_loss": val,
        "resumed_from_step": trained.start_step,
        "device": str(device),
        "run_dir": str(run_dir),
    }
    if s.probe and cfg["eval"]["tasks"]:
        result.update(_probe(cfg, s, trained.checkpoint))
    tmp = run_dir / f"{RESULT}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    tmp.replace(run_dir / RESULT)
    return result


def _probe(cfg: dict[str, Any], s: RunSpec, checkpoint: Path) -> dict[str, float]:
    """Downstream probe metrics of the run's encoder, flattened to ``probe_<task>_<metric>``."""
    from efm.data.shards import read_manifest
    from efm.evaluate.run import probe

    view = read_manifest(s.shards)["view_of"]
    out = probe(cfg, view, Path(s.run_dir), checkpoint, "pretrained")
    flat = {}
    for task, res in (out.get("tasks") or {}).items():
        for metric, value in (res.get("mean") or {}).items():
            if isinstance(value, int | float):
                flat[f"probe_{task}_{metric}"] = float(value)
    return flat


def _executor(kind: str, folder: Path, launcher: dict[str, Any]) -> Any:
    try:
        import submitit
    except ImportError:
        raise EfmError(
            f"sweep.executor={kind} needs submitit: pip install 'efm[scale]' (or run in this "
            "process with sweep.executor=inline)"
        ) from None
    ex = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    params = {"timeout_min": 24 * 60, **launcher}
    ex.update_parameters(**params)
    return ex


def launch(
    specs: list[RunSpec],
    kind: str,
    folder: Path,
    *,
    max_parallel: int = 1,
    launcher: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every unfinished run; return ``(results of the finished runs, failures)``.

    Finished runs (a ``result.json`` with the run's key) are skipped and their results reused.
    """
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for s in specs:
        done = finished(s)
        if done is not None:
            results[s.key] = done
        else:
            todo.append(s)
    if results:
        log.info("%d of %d run(s) already finished: skipped", len(results), len(specs))
    failures: list[str] = []
    if kind == "inline":
        for i, s in enumerate(todo, 1):
            log.info("run %d/%d: %s (%d steps)", i, len(todo), s.label, s.steps)
            try:
                results[s.key] = run_one(s.to_dict())
            except Exception as exc:  # logged with its reason; the sweep goes on
                failures.append(f"{s.label}: {type(exc).__name__}: {exc}")
                log.warning("run %s failed: %s: %s", s.label, type(exc).__name__, exc)
    elif todo:
        ex = _executor(kind, folder / "launcher", dict(launcher or {}))
        width = len(todo) if kind == "slurm" else max_parallel
        for lo in range(0, len(todo), width):
            chunk = todo[lo : lo + width]
            jobs = [ex.submit(run_one, s.to_dict()) for s in chunk]
            log.info(
                "submitted %s via submitit (%s): %s",
                ", ".join(s.label for s in chunk),
                kind,
                ", ".join(str(j.job_id) for j in jobs),
            )
            for s, job in zip(chunk, jobs):
                try:
                    results[s.key] = job.result()
                except Exception as exc:  # submitit wraps the job's error in FailedJobError
                    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                    failures.append(f"{s.label}: {reason}")
                    log.warning("run %s failed: %s (logs in %s)", s.label, reason, ex.folder)
    ordered = [results[s.key] for s in specs if s.key in results]
    return ordered, failures
