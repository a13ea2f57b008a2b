"""``efm eval`` and ``efm embed``: downstream tasks and embeddings of a checkpoint.

efm eval --run-dir RUN task=NAME [eval.modes=[linear,finetune,lora]] [eval.seeds=N]
         [data.root=DIR] [eval.test_subjects=[S001,S002] | eval.test_root=DIR]
efm eval --checkpoint PATH recipe=NAME task=NAME [...]
efm eval recipe=NAME task=NAME --random-init          # no checkpoint: baselines only
efm embed --run-dir RUN task=NAME data.root=DIR out=FILE.npz|FILE.parquet

``data.root`` here is the task's data (the pretraining run's own data and size profile are kept);
``out=`` of ``efm eval`` is the output folder (default ``RUN/eval/<task>/``, a new numbered folder
if it exists, so a second evaluation never overwrites the first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError, UsageError

log = logging.getLogger("efm.evaluate.cli")

OWN = ("task", "data.root", "out")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _split_own(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    own, rest = {}, []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if sep and key in OWN:
            own[key] = value
        else:
            rest.append(arg)
    return own, rest


def load_config(run_dir: str | None, overrides: list[str]) -> dict[str, Any]:
    """The run's config (``RUN/config.yaml``) with ``overrides`` applied, or a recipe's."""
    from efm.config import compose, validate

    if run_dir and not any(o.startswith("recipe=") for o in overrides):
        import yaml

        from efm.config import _apply, parse_overrides

        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise UsageError(f"{run_dir} has no config.yaml: is it an efm run directory?")
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        _, ops = parse_overrides(overrides)
        problems = _apply(cfg, ops)
        if problems:
            from efm.errors import ConfigError

            raise ConfigError(problems)
        return validate(cfg)
    if not overrides:
        raise UsageError("usage: efm eval --run-dir RUN task=NAME | efm eval recipe=NAME task=NAME")
    return compose(overrides)


def checkpoint_of(args: argparse.Namespace, run_dir: Path | None) -> Path | None:
    """The checkpoint to evaluate: ``--checkpoint``, else the run's newest; None for random init."""
    from efm.train import checkpoint as ckpt

    if args.random_init:
        return None
    if args.checkpoint:
        path = Path(args.checkpoint)
        if not path.exists():
            raise UsageError(f"--checkpoint {path} does not exist")
        return path
    found = ckpt.latest(run_dir) if run_dir is not None else None
    if found is None:
        raise UsageError(
            f"no checkpoint in {run_dir}; give --run-dir of a trained run, --checkpoint PATH, "
            "or --random-init for the baselines alone"
        )
    return Path(found)


def fresh_dir(path: Path) -> Path:
    """``path`` if it does not exist, else ``path-2``, ``path-3`` ... (never overwrite)."""
    if not path.exists():
        return path
    k = 2
    while path.with_name(f"{path.name}-{k}").exists():
        k += 1
    return path.with_name(f"{path.name}-{k}")


def plan_of(ev: dict[str, Any]) -> Any:
    from efm.evaluate.downstream import MODES, Plan

    modes = list(ev.get("modes") or [])
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UsageError(f"eval.modes: unknown {', '.join(bad)}; options: {', '.join(MODES)}")
    known = ("random-init", "bandpower-logreg", "eegnet")
    bad = [b for b in ev.get("baselines") or [] if b not in known]
    if bad:
        raise UsageError(f"eval.baselines: unknown {', '.join(bad)}; options: {', '.join(known)}")
    return Plan(
        modes=modes,
        seeds=int(ev["seeds"]),
        split=str(ev["split"]),
        folds=int(ev["folds"]),
        test_subjects=[str(s) for s in ev.get("test_subjects") or []],
        baselines=list(ev.get("baselines") or []),
        C=float(ev["C"]),
        batch_size=int(ev["batch_size"]),
    )


def evaluate_task(
    cfg: dict[str, Any],
    name: str,
    checkpoint: Path | None,
    out: Path,
    root: str | None = None,
    run_cfg: dict[str, Any] | None = None,
    say: Any = _say,
) -> dict[str, Any]:
    """Load the task's epochs, run every row, write ``results.json`` and ``report.md``."""
    from efm import __version__
    from efm.evaluate import downstream, schema, taskdata
    from efm.evaluate.config import FinetuneConfig
    from efm.evaluate.report import write_eval
    from efm.evaluate.task import get

    task = get(name)
    ev = cfg["eval"]
    plan = plan_of(ev)
    data = taskdata.load(task, cfg, root)
    is_test = None
    if ev.get("test_root"):
        test = taskdata.load(task, cfg, ev["test_root"])
        if test.ch_names != data.ch_names:
            raise EfmError("eval.test_root: its channels differ from data.root's")
        is_test = np.r_[np.zeros(len(data), bool), np.ones(len(test), bool)]
        data = _concat(data, test)
    elif plan.test_subjects:
        plan.split = "fixed"
    elif task.split != "kfold" and ev["split"] == "kfold":
        plan.split = task.split
    fc = FinetuneConfig(**ev.get("finetune", {}))
    result = downstream.run_task(
        cfg, task, data, plan, checkpoint, out, finetune=fc, is_test=is_test,
        pretraining=downstream.pretraining_sha256(run_cfg), say=say,
    )  # fmt: skip
    result = {"schema": schema.VERSION, **result}
    if run_cfg is not None:
        result["pretraining"] = {"steps": int(run_cfg["train"]["steps"])}
    result["efm_version"] = __version__
    result["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    text = json.dumps(schema.finite(result), default=str, allow_nan=False)
    problems = schema.problems(json.loads(text))
    if problems:  # a bug of efm's, not the user's: say it loudly
        raise RuntimeError("results.json does not match its schema: " + "; ".join(problems[:5]))
    md, _ = write_eval(out, result)
    say(result["summary"])
    say(f"report: {md}")
    return result


def _run_config_of(checkpoint: Path) -> dict[str, Any] | None:
    """The config of the run a checkpoint belongs to (for the pretraining corpus), if found."""
    import yaml

    for folder in (checkpoint, *checkpoint.parents[:3]):
        path = folder / "config.yaml"
        if path.is_file():
            try:
                return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
            except yaml.YAMLError:
                return None
    return None


def _concat(a: Any, b: Any) -> Any:
    from efm.evaluate.taskdata import TaskData

    arrays = ("x", "y", "subject", "session", "recording", "sha256", "start_s")
    merged = {k: np.concatenate([getattr(a, k), getattr(b, k)]) for k in arrays}
    rest = {k: v for k, v in a.__dict__.items() if k not in arrays}
    rest["skipped"] = a.skipped + b.skipped
    return TaskData(**merged, **rest)


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    from efm.cli import plain

    p = argparse.ArgumentParser(prog=prog, description=plain(doc))
    p.add_argument("--run-dir", help="a run directory (its config.yaml and newest checkpoint)")
    p.add_argument("--checkpoint", help="a checkpoint directory or model.safetensors file")
    p.add_argument("--random-init", action="store_true", help="no checkpoint: baselines only")
    p.add_argument("overrides", nargs="*", metavar="task=NAME key=value")
    return p


def cli(argv: list[str]) -> int:
    """``efm eval`` entry point (raw argv after the subcommand)."""
    p = _parser("efm eval", "efm eval: downstream tasks of a checkpoint, every row side by side")
    args = p.parse_intermixed_args(argv)
    own, rest = _split_own(args.overrides)
    if "task" not in own:
        from efm import registry

        raise UsageError(f"efm eval needs task=NAME; tasks: {', '.join(registry.names('tasks'))}")
    from efm.evaluate.task import get

    get(own["task"])  # an unknown task name fails before anything else
    run_dir = Path(args.run_dir) if args.run_dir else None
    cfg = load_config(args.run_dir, rest)
    run_cfg = cfg if run_dir is not None else None
    checkpoint = checkpoint_of(args, run_dir)
    if run_cfg is None and checkpoint is not None:  # RUN/checkpoints/step-N: the run's config
        run_cfg = _run_config_of(checkpoint)
    base = run_dir or Path("runs") / f"eval-{cfg['recipe']}"
    out = Path(own["out"]) if "out" in own else fresh_dir(base / "eval" / own["task"])
    where = own.get("data.root")
    _say(
        f"efm eval: task {own['task']} on {where or 'its default data'}, recipe {cfg['recipe']!r} "
        f"(its pipeline and sizes kept), checkpoint {checkpoint or 'none (random init)'}; "
        f"writing {out}"
    )
    evaluate_task(cfg, own["task"], checkpoint, out, where, run_cfg)
    return 0


def cli_embed(argv: list[str]) -> int:
    """``efm embed``: embeddings of a task's (or any labelled folder's) epochs with metadata."""
    from efm.evaluate import adapt, taskdata
    from efm.evaluate.task import get

    p = _parser("efm embed", "efm embed: embeddings of a checkpoint with their metadata")
    args = p.parse_intermixed_args(argv)
    own, rest = _split_own(args.overrides)
    if "task" not in own or "out" not in own:
        raise UsageError("usage: efm embed --run-dir RUN task=NAME data.root=DIR out=FILE.npz")
    run_dir = Path(args.run_dir) if args.run_dir else None
    cfg = load_config(args.run_dir, rest)
    checkpoint = checkpoint_of(args, run_dir)
    task = get(own["task"])
    data = taskdata.load(task, cfg, own.get("data.root"))
    x, _ = adapt.fit_length(cfg, data.x, data.sfreq)
    enc = adapt.build_encoder(cfg, x, data.sfreq, checkpoint, int(cfg["train"]["seed"]))
    z = adapt.embed(enc, x, data.meta(), int(cfg["eval"]["batch_size"]))
    out = write_embeddings(Path(own["out"]), z, data)
    _say(f"{z.shape[0]} embeddings of dimension {z.shape[1]} -> {out}")
    return 0


def write_embeddings(out: Path, z: np.ndarray, data: Any) -> Path:
    """``.npz`` (or ``.parquet`` when pyarrow is installed) with subject, recording, start, label."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = {
        "subject": data.subject.astype(str),
        "recording": data.recording.astype(str),
        "start_s": data.start_s,
        "label": np.asarray(data.classes)[data.y],
        "label_index": data.y,
    }
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise UsageError(
                "out=*.parquet needs pyarrow (pip install pyarrow); or use .npz"
            ) from exc
        table = pa.table({**{k: list(v) for k, v in cols.items()}, "embedding": list(z)})
        pq.write_table(table, out)
        return out
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    np.savez_compressed(out, embedding=z, classes=np.asarray(data.classes), **cols)
    return out
