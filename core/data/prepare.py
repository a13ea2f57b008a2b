"""``efm prepare``: recordings on disk to WebDataset shards, over a process pool, resumable.

    efm prepare recipe=epi250k data.root=/data/edf out=/data/shards workers=8
    efm prepare recipe=epi250k data.root=/data/edf out=/data/shards --shard-index 3 --num-shards 16

``out=`` and ``workers=`` are short for ``data.out=`` and ``data.workers=``; any other recipe
override works too. Without ``data.root`` the embedded demo corpus is generated and prepared. The
file list (every file under ``data.root`` matching ``data.glob`` whose extension a registered
reader claims, sorted) is partitioned deterministically: file ``k`` belongs to shard index
``k % num_shards``, so a SLURM array can run one partition per task into the same ``out``. Of
several files with one recording id (a Nihon Kohden ``x.EEG`` and its ``x.EDF`` export) one is
kept and the others are reported (:func:`efm.data.pipeline.same_recording` states the rule).
Exit status: 0 when every file was prepared, 1 when some failed (see the failure log), 2 on usage
or config errors.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from efm.data import pipeline, shards
from efm.data.sources import (  # noqa: F401  (re-exported: efm.data.prepare.out_dir ...)
    cache_dir,
    check_config,
    claimed_extensions,
    config_hash,
    discover,
    identity,
    out_dir,
    reader_for,
)
from efm.errors import EfmError, UsageError

log = logging.getLogger("efm.data.prepare")
SHORT = {"out": "data.out", "workers": "data.workers", "root": "data.root"}
_DONE: frozenset[str] = frozenset()


def _init_worker(done: frozenset[str]) -> None:
    global _DONE
    _DONE = done
    try:
        import mne

        mne.set_log_level("ERROR")
    except ImportError:  # pragma: no cover
        pass


def _work(task: dict[str, Any]) -> dict[str, Any]:
    return pipeline.process_file({**task, "done": _DONE})


def check_pipeline(pipe: dict[str, Any], file_labels: dict[str, Any] | None = None) -> None:
    """Every pipeline option and ``data.file_labels`` rule that would fail, reported once."""
    from efm.data import montage, sleep, taxonomy
    from efm.errors import ConfigError

    problems = pipeline.check_file_labels(file_labels)
    if pipe["path"] not in ("eeg", "ieeg"):
        problems.append(f"pipeline.path={pipe['path']!r}; options: eeg, ieeg")
    if pipe["epoch_s"] <= 0 or pipe["sfreq"] <= 0 or pipe["shard_max_epochs"] < 1:
        problems.append(
            "pipeline.epoch_s, pipeline.sfreq and pipeline.shard_max_epochs must be > 0"
        )
    checks = [
        lambda: montage.load_regions(pipe["regions"]),
        lambda: taxonomy.load(pipe["taxonomy"]),
    ]
    if pipe["path"] == "eeg":  # sleep staging runs on scalp EEG only: no notice for iEEG
        checks.append(lambda: sleep.available(pipe["sleep_staging"]))
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            problems += exc.problems
        except (EfmError, OSError) as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)


def prepare(
    cfg: dict[str, Any], shard_index: int = 0, num_shards: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Prepare one partition of the recordings of ``cfg`` into ``out_dir(cfg)``; return a summary."""
    if not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index {shard_index} must be in [0, {num_shards})")
    data = cfg.get("data", {})
    check_pipeline(cfg["pipeline"], data.get("file_labels"))
    out = out_dir(cfg)
    if data.get("root") in (None, ""):
        from efm.data import demo

        root = demo.ensure_corpus(
            int(data["demo_patients"]), float(data["demo_minutes"]), int(data["demo_seed"])
        )
        log.info(
            "using the embedded demo corpus (%d patients x %g min) at %s",
            data["demo_patients"],
            data["demo_minutes"],
            root,
        )
    else:
        root = Path(data["root"]).expanduser()
    exts = claimed_extensions()
    files = discover(root, data.get("glob") or "**/*", exts)
    if not files:
        raise EfmError(
            f"no recordings under {root} matching {data.get('glob')!r} with a "
            f"registered extension ({', '.join(sorted(exts)) or 'no readers'})"
        )
    for task, rules in (data.get("file_labels") or {}).items():
        if not any(pipeline.file_labels(rel, {task: rules}) for _, rel in files):
            log.warning("data.file_labels.%s matches none of the %d files", task, len(files))
    files, same = pipeline.same_recording(files, data["patient_regex"])
    for rel, twin in same.items():
        log.warning("skipped %s: %s", rel, twin["reason"])
    check_config(out, cfg)
    mine = [(k, p, rel) for k, (p, rel) in enumerate(files) if k % num_shards == shard_index]
    resume_path, fail_path = shards.log_paths(out, shard_index, num_shards)
    resume, failures = shards.Log(resume_path), shards.Log(fail_path, fresh=True)
    shards.remove_stale(out, {shards.group_id(rel) for _, _, rel in mine})
    done = frozenset(shards.completed(out))
    reader = cfg.get("reader") or {"name": "mne"}
    reader_cfg = {k: v for k, v in reader.items() if k != "name"}
    tasks = []
    for k, p, rel in mine:
        name = reader_for(p, reader["name"], exts)
        tasks.append(
            {
                "path": str(p),
                "rel": rel,
                "file_index": k,
                "out": str(out),
                "reader": name,
                "reader_cfg": reader_cfg if name == reader["name"] else {},
                "pipeline": cfg["pipeline"],
                "patient_regex": data["patient_regex"],
                "file_labels": data.get("file_labels") or {},
            }
        )
    summary = _run(tasks, done, int(data.get("workers") or 1), resume, failures, progress)
    info = {
        "recipe": cfg.get("recipe"),
        "config_hash": config_hash(cfg),
        "path": cfg["pipeline"]["path"],
        "sfreq": cfg["pipeline"]["sfreq"],
        "epoch_s": cfg["pipeline"]["epoch_s"],
        "root": str(root),
        "same_recording": {rel: twin["kept"] for rel, twin in same.items()},
    }
    manifest = shards.write_manifest(out, info, [rel for _, rel in files])
    summary.update(
        out=str(out),
        root=str(root),
        n_files=len(mine),
        manifest_complete=manifest["complete"],
        failure_log=str(fail_path),
        same_recording=same,
    )
    return summary


def _run(
    tasks: list[dict[str, Any]],
    done: frozenset[str],
    workers: int,
    resume: shards.Log,
    failures: shards.Log,
    progress: bool,
) -> dict[str, Any]:
    from tqdm import tqdm

    owners: dict[str, str] = {}  # sha256 -> the source prepared with that content
    for e in shards.entries(resume.path.parent.parent):
        owners.setdefault(e["sha256"], e.get("duplicate_of") or e["source"])
    stats: dict[str, Any] = {
        "ok": 0,
        "done": 0,
        "failed": 0,
        "by_reason": {},
        "hours": 0.0,
        "epochs": 0,
        "shards": 0,
    }
    bar = tqdm(
        total=len(tasks),
        unit="file",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        desc="prepare",
    )
    t0 = time.perf_counter()

    def collect(res: dict[str, Any]) -> None:
        if res["status"] == "ok":
            resume.append({k: v for k, v in res.items() if k != "status"})
            stats["ok"] += 1
            stats["hours"] += res["hours"]
            stats["epochs"] += res["n_epochs"]
            stats["shards"] += len(res["shards"])
        elif res["status"] == "done":
            stats["done"] += 1
            twin = owners.get(res["sha256"])
            if twin is not None and twin != res["source"]:  # same content under another path
                resume.append(
                    {
                        "sha256": res["sha256"],
                        "source": res["source"],
                        "file_index": res["file_index"],
                        "duplicate_of": twin,
                    }
                )
                owners.setdefault(res["sha256"], twin)
        else:
            failures.append({k: res[k] for k in ("source", "file_index", "kind", "reason")})
            stats["failed"] += 1
            stats["by_reason"][res["kind"]] = stats["by_reason"].get(res["kind"], 0) + 1
            log.warning("failed: %s", res["reason"])
        bar.update(1)
        bar.set_postfix(hours=f"{stats['hours']:.1f}", failed=stats["failed"], refresh=False)

    try:
        if workers <= 1:
            _init_worker(done)
            for task in tasks:
                collect(_work(task))
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(done,)
            ) as pool:
                futures = {pool.submit(_work, t): t for t in tasks}
                for fut in cf.as_completed(futures):
                    try:
                        collect(fut.result())
                    except cf.process.BrokenProcessPool:  # a worker died (out of memory?)
                        t = futures[fut]
                        collect(
                            {
                                "source": t["rel"],
                                "file_index": t["file_index"],
                                "status": "failed",
                                "kind": "worker-died",
                                "reason": f"{t['path']}: a worker process died while this file "
                                "was queued or in progress; run again to retry",
                            }
                        )
    finally:
        bar.close()
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    return stats


def format_summary(s: dict[str, Any]) -> str:
    """The closing summary: files ok, failed by reason, hours, epochs, shards."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items()))
    lines = [
        f"prepared {s['n_files']} files in {s['seconds']:.1f} s: {s['ok']} ok, "
        f"{s['done']} already done, {s['failed']} failed" + (f" ({reasons})" if reasons else ""),
        f"{s['hours']:.2f} h of recordings -> {s['epochs']} epochs in {s['shards']} shards "
        f"under {s['out']}",
    ]
    for rel, twin in sorted((s.get("same_recording") or {}).items()):
        lines.append(f"skipped {rel}: {twin['reason']}")
    if s["failed"]:
        lines.append(f"failure reasons: {s['failure_log']}")
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"efm prepare: {message}")


def compose_data(overrides: list[str], paths: bool = False) -> dict[str, Any]:
    """The resolved config for preparing data: the model nodes are left out (not needed here).

    ``paths=True`` (the CLI) also checks that ``data.root`` and the pipeline's files exist.
    """
    from efm.config import compose, parse_overrides, recipe_mapping

    model = ("representation", "backbone", "objective")
    recipe, _ = parse_overrides(overrides)
    base = recipe_mapping(recipe)[1] if recipe else {}
    keep = [o for o in overrides if o.lstrip("~").split("=")[0].split(".")[0] not in model]
    return compose(keep + [f"~{n}" for n in model if n in base], paths=paths)


def cli(argv: list[str]) -> int:
    """``efm prepare`` entry point (raw argv after the subcommand)."""
    from efm.cli import plain

    p = _Parser(prog="efm prepare", description=plain((__doc__ or "").split("\n\n")[0]))
    p.add_argument("--shard-index", type=int, default=0, help="this partition (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of partitions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="recipe=NAME data.root=DIR out=DIR workers=N")
    args = p.parse_intermixed_args(argv)
    overrides = []
    for o in args.overrides:
        key, sep, value = o.partition("=")
        overrides.append(f"{SHORT[key]}={value}" if sep and key in SHORT else o)
    cfg = compose_data(overrides, paths=True)
    summary = prepare(cfg, args.shard_index, args.num_shards, progress=not args.no_progress)
    sys.stdout.write(format_summary(summary))
    return 1 if summary["failed"] else 0
