"""``efm run`` (prepare, pretrain, probe, report) and ``efm pretrain``.

``run(cfg)`` says in its first lines which recipe and profile it runs and whether it uses the
embedded demo corpus, then: shards = ``efm.data.ensure_shards(cfg)`` (prepared once, cached);
pretraining (``efm.train.loop``) into the run directory, resuming it if it exists; linear probes of
the frozen encoder (``efm.evaluate``), for the pretrained encoder and for the same encoder at random
initialisation as a baseline; a report (``report.md`` / ``report.json``) in the run directory.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from efm.errors import UsageError

log = logging.getLogger("efm.run")


class _SkippedOnce(logging.Filter):
    """Drops the probes' "skipped" warnings: the run's summary states each skipped task once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "skipped" not in record.getMessage()


def _say(line: str) -> None:
    """One line of the run's own output; under torchrun, rank 0's only."""
    from efm.train.distributed import is_main

    if is_main():
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def header(cfg: dict[str, Any]) -> list[str]:
    """The first lines of a run: recipe, profile, data source, model and schedule."""
    data, t = cfg.get("data") or {}, cfg["train"]
    profile = data.get("profile", "auto")
    if data.get("root") in (None, ""):
        source = (
            f"the embedded demo corpus ({data.get('demo_patients')} patients x "
            f"{data.get('demo_minutes')} min, generated once and cached)"
        )
    else:
        source = f"recordings under {data['root']}"
        if profile == "full":  # data.root switches the sizes: say so, and how to keep the demo's
            source += (
                " (data.root selects the full profile; data.profile=demo keeps the demo sizes)"
            )
    names = [
        str((cfg.get(n) or {}).get("name")) for n in ("representation", "backbone", "objective")
    ]
    size = {"demo": " (small, for a CPU)", "full": " (the paper's configuration)"}.get(profile, "")
    return [
        f"efm run: recipe {cfg.get('recipe')!r}, profile {profile!r}{size}, on {source}",
        f"model: {' -> '.join(names)}; {t['steps']} steps of batch {t['batch_size']}; "
        f"probes: {', '.join(cfg['eval']['tasks'])}",
    ]


def first_lines(cfg: dict[str, Any], run_dir: Path) -> list[str]:
    """Compute (device, threads), where results go, and how long the run is expected to take."""
    import torch

    from efm.train.loop import ABSURD_CPU_S, configure_threads

    t = cfg["train"]
    cuda = torch.cuda.is_available()
    compute = f"CUDA ({torch.cuda.get_device_name(0)})" if cuda else "CPU"
    lines = [
        f"compute: {compute}, {configure_threads(t)}",
        f"results: {run_dir} (report.md, figures/, checkpoints/, tensorboard/; "
        "Ctrl-C saves a checkpoint, the same command resumes)",
    ]
    profile = (cfg.get("data") or {}).get("profile")
    if not cuda and profile == "full":
        lines.append(
            f"warning: profile 'full' is the paper's configuration ({t['steps']} steps of batch "
            f"{t['batch_size']}), meant for GPUs: on a CPU it would take far more than "
            f"{ABSURD_CPU_S // 3600} h; data.profile=demo runs on a CPU"
        )
    lines.append(
        "time: estimated after the first pretraining steps (progress bars show rate and ETA)"
    )
    return lines


def compare_encoders(pretrained: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """In words, per task: does the pretrained encoder beat its random init by more than the spread?

    Both encoders are probed on the same patient-level splits (one per seed). When their per-seed
    scores carry the same test patients, the comparison is paired: the difference of Cohen's kappa
    per split, its mean against its standard deviation over the splits (the split's own difficulty,
    shared by both encoders, cancels). Otherwise: the difference of the means against the larger of
    the two standard deviations.
    """
    import numpy as np

    out = []
    for task, p in pretrained.items():
        b = baseline.get(task) or {}
        if "mean" not in p or "mean" not in b:
            continue
        ps, bs = p.get("per_seed") or [], b.get("per_seed") or []
        paired = len(ps) == len(bs) > 1 and all(
            x.get("test_patients") == y.get("test_patients") for x, y in zip(ps, bs)
        )
        numbers = f"kappa {p['mean']['kappa']:.3f} vs {b['mean']['kappa']:.3f}"
        if paired:
            d = np.array([x["kappa"] - y["kappa"] for x, y in zip(ps, bs)], dtype=float)
            diff, spread = float(np.nanmean(d)), float(np.nanstd(d))
            numbers += (
                f"; per split {diff:+.3f} ± {spread:.3f} over {len(d)} identical patient-level "
                f"splits, pretrained ahead in {int((d > 0).sum())}"
            )
        else:
            diff = p["mean"]["kappa"] - b["mean"]["kappa"]
            spread = max(p["std"]["kappa"], b["std"]["kappa"])
            numbers += f", seed spread {spread:.3f}"
        if "auroc" in p["mean"] and "auroc" in b["mean"]:
            numbers += f"; AUROC {p['mean']['auroc']:.3f} vs {b['mean']['auroc']:.3f}"
        if diff > spread:
            verdict = "the pretrained encoder beats its random init by more than the seed spread"
        elif diff >= 0:
            verdict = (
                "the pretrained encoder is ahead of its random init by less than the seed spread"
            )
        elif diff >= -spread:
            verdict = "the random-init baseline wins, by less than the seed spread"
        else:
            verdict = "the random-init baseline wins by more than the seed spread"
        tail = "" if diff > spread else ": no evidence here that pretraining helped this probe"
        out.append(f"{task}: {verdict} ({numbers}){tail}.")
    return out


def loss_line(losses: dict[str, float], cfg: dict[str, Any]) -> str:
    """The first and last logged loss (each the mean over a log interval), as the report has them."""
    return (
        f"loss {losses['first_loss']:.4g} (step {losses['first_step']:.0f}) -> "
        f"{losses['last_loss']:.4g} (step {losses['last_step']:.0f}), each the mean over "
        f"{cfg['train']['log_every']} steps"
    )


def run(cfg: dict[str, Any]) -> int:
    """Prepare (if needed), pretrain, probe and report; return the exit status."""
    from efm.assemble import require as require_assembly
    from efm.data import ensure_shards
    from efm.evaluate.report import write_report
    from efm.evaluate.run import probe, summary_lines
    from efm.train.distributed import check_batch
    from efm.train.loop import pretrain
    from efm.train.rundir import default_run_dir

    require_assembly(cfg)  # every assembly problem now, before any data is prepared
    check_batch(cfg)  # the global batch splits over the processes
    run_dir = default_run_dir(cfg)
    lines = header(cfg)
    for line in lines:
        _say(line)
    for line in first_lines(cfg, run_dir):  # may warn that the machine is busy: after the header
        lines.append(line)
        _say(line)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    shards = Path(ensure_shards(cfg, progress=bool(cfg["train"].get("progress", True))))
    times["prepare_s"] = time.perf_counter() - t0
    from efm.train.loader import read_manifest

    manifest = read_manifest(shards)
    _say(f"data: {manifest.get('n_epochs')} epochs in {len(manifest['urls'])} shard(s) at {shards}")

    t0 = time.perf_counter()
    result = pretrain(cfg, shards, run_dir)
    times["pretrain_s"] = time.perf_counter() - t0
    from efm.train.rundir import Metrics, loss_summary

    losses = loss_summary(Metrics.read_csv(run_dir / "metrics.csv"))
    if result.losses:
        _say(
            f"pretrained steps {result.start_step}..{result.steps}: {loss_line(losses, cfg)}, "
            f"{result.samples_per_s:.1f} samples/s"
        )
    else:
        _say(f"pretraining already complete ({result.steps} steps); reusing {result.checkpoint}")

    import torch

    if torch.distributed.is_initialized():  # under torchrun: rank 0 probes and reports
        torch.distributed.barrier()
        if torch.distributed.get_rank() != 0:
            return 0
    t0 = time.perf_counter()
    # a task without labels is skipped for both encoders: said once, in the summary below
    quiet = _SkippedOnce()
    probe_log = logging.getLogger("efm.evaluate.probe")
    probe_log.addFilter(quiet)
    try:
        pretrained = probe(cfg, shards, run_dir, result.checkpoint, "pretrained")
        baseline = probe(cfg, shards, run_dir, None, "random_init")
    finally:
        probe_log.removeFilter(quiet)
    times["probe_s"] = time.perf_counter() - t0
    for line in summary_lines(pretrained["tasks"]):
        _say(line)
    probed = {k: v for k, v in baseline["tasks"].items() if "skipped" not in v}
    for line in summary_lines(probed):
        _say("baseline (random-init encoder) " + line)
    comparison = compare_encoders(pretrained["tasks"], baseline["tasks"])
    for line in comparison:
        _say(line)

    report = {
        "recipe": cfg.get("recipe"),
        "header": lines,
        "train": {
            "steps": result.steps,
            "start_step": result.start_step,
            "steps_run": len(result.losses),
            "batch_size": cfg["train"]["batch_size"],
            **losses,
            "loss_definition": f"mean over each interval of {cfg['train']['log_every']} steps",
            "samples_per_s": result.samples_per_s,
            "checkpoint": str(result.checkpoint),
        },
        "probes": pretrained["tasks"],
        "encoders": {"pretrained": pretrained, "random_init": baseline},
        "comparison": comparison,
        "times": times,
        "shards": str(shards),
    }
    report["downstream"] = downstream_tasks(cfg, run_dir, result.checkpoint)
    md, _ = write_report(run_dir, report)
    _say(f"report: {md}")
    return 0


def downstream_tasks(cfg: dict[str, Any], run_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """``efm eval`` for each registered task named in ``eval.tasks`` (data: the task's own root or
    fetcher, else the run's ``data.root``); a task that cannot run is reported, not fatal."""
    from efm.errors import EfmError
    from efm.evaluate.cli import evaluate_task, fresh_dir
    from efm.evaluate.task import split_names

    out: dict[str, Any] = {}
    for name in split_names(list(cfg["eval"]["tasks"]))[1]:
        where = fresh_dir(run_dir / "eval" / name)
        try:
            from efm.evaluate.task import get

            task = get(name)
            root = None if (task.root or task.fetch) else (cfg.get("data") or {}).get("root")
            res = evaluate_task(cfg, name, checkpoint, where, root, run_cfg=cfg, say=_say)
            out[name] = {"results": str(where / "results.json"), "summary": res["summary"]}
        except EfmError as exc:
            _say(f"task {name}: skipped ({exc})")
            out[name] = {"skipped": str(exc)}
    return out


def cli_pretrain(argv: list[str]) -> int:
    """``efm pretrain recipe=NAME [overrides]``: prepare if needed and pretrain, without probes."""
    from efm.config import compose
    from efm.data import ensure_shards
    from efm.train.loop import pretrain
    from efm.train.rundir import default_run_dir

    if not argv or argv[0] in ("-h", "--help"):
        _say("usage: efm pretrain recipe=NAME [key=value ...]   (see `efm run`)")
        if not argv:
            raise UsageError("efm pretrain needs recipe=NAME")
        return 0
    cfg = compose(argv)
    from efm.assemble import require as require_assembly

    require_assembly(cfg)  # every assembly problem now, before any data is prepared
    from efm.train.distributed import check_batch

    check_batch(cfg)
    for line in header(cfg)[:2]:
        _say(line.replace("efm run:", "efm pretrain:"))
    run_dir = default_run_dir(cfg)
    for line in first_lines(cfg, run_dir):
        _say(line)
    shards = Path(ensure_shards(cfg, progress=bool(cfg["train"].get("progress", True))))
    result = pretrain(cfg, shards, run_dir)
    _say(f"checkpoint: {result.checkpoint}")
    return 0
