"""Where efm keeps what it generates and prepares: ``$EFM_CACHE`` or ``~/.cache/efm``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$EFM_CACHE`` or ``~/.cache/efm``."""
    return Path(os.environ.get("EFM_CACHE") or Path.home() / ".cache" / "efm").expanduser()
