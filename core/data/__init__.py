"""The data pipeline: recordings to epochs in WebDataset shards.

The public entry points are :func:`ensure_shards` (for the training engine) and ``efm prepare``
(:mod:`efm.data.prepare`). This package is imported by config validation, so it imports nothing
heavy at module level.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("efm.data")

__all__ = ["ensure_shards"]


def ensure_shards(cfg: dict[str, Any], progress: bool = False) -> Path:
    """The prepared directory (with ``manifest.json``) for a resolved config, preparing it if needed.

    Parameters
    ----------
    cfg : dict
        A resolved config (``efm.config.compose``). With ``data.root`` null the embedded demo corpus
        is generated (cached) and prepared. The output is ``data.out`` or
        ``${EFM_CACHE:-~/.cache/efm}/shards/<hash of data, pipeline and reader>``.
    progress : bool
        Show a progress bar while preparing.

    Returns
    -------
    pathlib.Path
        The directory holding ``manifest.json`` and ``shards/``.

    Raises
    ------
    efm.errors.EfmError
        When no file could be prepared (the failure log names the reasons).
    """
    from efm.data.prepare import config_hash, format_summary, out_dir, prepare
    from efm.errors import EfmError

    out = out_dir(cfg)
    manifest = out / "manifest.json"

    def ready() -> bool:
        if not manifest.is_file():
            return False
        m = json.loads(manifest.read_text(encoding="utf-8"))
        return bool(
            m.get("complete") and m.get("config_hash") == config_hash(cfg) and m.get("n_epochs")
        )

    if ready():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):  # ranks of one job prepare only once
        if ready():
            return out
        summary = prepare(cfg, progress=progress)
    for line in format_summary(summary).splitlines():
        log.info(line)
    m = json.loads(manifest.read_text(encoding="utf-8"))
    if not m.get("n_epochs"):
        raise EfmError(
            f"no epochs could be prepared from {summary['root']}; reasons in "
            f"{summary['failure_log']}"
        )
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on the directory ``path`` itself (POSIX ``flock``; a no-op where
    unavailable): no lock file is left behind, whether the work succeeds or fails."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
