"""The run directory: resolved config, provenance, metrics (CSV and TensorBoard).

Layout::

    RUN/config.yaml          the resolved config
    RUN/provenance.json      efm version, git sha, plugins, torch / CUDA versions, device, command
    RUN/metrics.csv          one row per log interval
    RUN/tensorboard/         the same scalars for TensorBoard (when tensorboard is installed)
    RUN/checkpoints/         see efm.train.checkpoint
    RUN/figures/             loss curve, reconstructions, probe plots
    RUN/report.md, report.json
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("efm.train.rundir")

# options that do not change what is trained (and the whole eval node): left out of the run hash
_NOT_HASHED = {
    "data": ("workers", "out"),
    "train": (
        "run_dir",
        "resume",
        "progress",
        "num_workers",
        "log_every",
        "figures",
        "figures_every",
        "keep_ckpts",
        "dist_timeout_s",
        "threads",
    ),
}


def config_hash(cfg: dict[str, Any]) -> str:
    """Eight hex digits identifying what a config trains (ignores paths and logging options)."""
    clean = {
        k: (dict(v) if isinstance(v, dict) else v)
        for k, v in cfg.items()
        if k not in ("eval", "sweep")
    }
    for node, keys in _NOT_HASHED.items():
        for key in keys:
            clean.get(node, {}).pop(key, None)
    text = json.dumps(clean, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_run_dir(cfg: dict[str, Any]) -> Path:
    """``train.run_dir``, else ``runs/<recipe>-<profile>-<hash>`` under the working directory."""
    given = (cfg.get("train") or {}).get("run_dir")
    if given:
        return Path(given)
    profile = (cfg.get("data") or {}).get("profile", "auto")
    return Path.cwd() / "runs" / f"{cfg.get('recipe', 'run')}-{profile}-{config_hash(cfg)}"


def git_sha() -> str | None:
    """The source checkout's commit (with ``-dirty`` when it has changes), or None."""
    from efm.registry import repo_root

    root = repo_root()
    if root is None:
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def provenance(device: Any = None, world_size: int = 1) -> dict[str, Any]:
    """What produced a run: versions, plugins, hardware."""
    import torch

    from efm import __version__, registry

    reg = registry.get_registry()
    dev = {"type": str(device) if device is not None else "cpu", "world_size": world_size}
    if torch.cuda.is_available():
        dev["name"] = torch.cuda.get_device_name(0)
        dev["count"] = torch.cuda.device_count()
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["cpu_threads"] = torch.get_num_threads()
    return {
        "efm_version": __version__,
        "git_sha": git_sha(),
        "command": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": dev,
        "plugins": [
            {k: p.get(k) for k in ("plugin", "module", "distribution", "version", "registered")}
            for p in reg.plugins
        ],
    }


def write_config(run_dir: Path, cfg: dict[str, Any]) -> None:
    from efm.config import to_yaml

    (run_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")


class Metrics:
    """Append-only metrics: a CSV file and, when available, TensorBoard scalars.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    resume_step : int | None
        When resuming, rows after this step (written after the checkpoint) are dropped first.
    tensorboard : bool
        Also write TensorBoard event files.
    """

    def __init__(
        self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = run_dir / "metrics.csv"
        self.columns: list[str] | None = None
        if self.path.exists() and resume_step is not None:
            with self.path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.columns = list(rows[0])
            keep = [r for r in rows if int(float(r["step"])) <= resume_step]
            self._rewrite(keep)
        elif self.path.exists():
            self.path.unlink()
        self.tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)
            except ImportError:
                log.info(
                    "TensorBoard logging is off: tensorboard, a dependency of efm, is missing "
                    "(pip install tensorboard); metrics.csv is written either way"
                )

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        if self.columns is None:
            return
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **values}
        new = not self.path.exists()
        if self.columns is None:
            self.columns = list(row)
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"train/{key}", value, step)

    def read(self) -> list[dict[str, float]]:
        return self.read_csv(self.path)

    @staticmethod
    def read_csv(path: Path) -> list[dict[str, float]]:
        """The rows of a metrics CSV as floats (empty when there is none)."""
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as f:
            return [
                {k: float(v) for k, v in r.items() if v not in ("", None)}
                for r in csv.DictReader(f)
            ]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def loss_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """First and last logged loss of a run, as the console and the report both state them.

    The loss of a row is the mean over its log interval (``train.log_every`` steps), not the
    single step's value, so the console, ``metrics.csv``, TensorBoard and the report agree.
    """
    rows = [r for r in rows if "loss" in r]
    if not rows:
        nan = float("nan")
        return {"first_loss": nan, "first_step": nan, "last_loss": nan, "last_step": nan}
    return {
        "first_loss": rows[0]["loss"],
        "first_step": rows[0]["step"],
        "last_loss": rows[-1]["loss"],
        "last_step": rows[-1]["step"],
    }
