"""efm's built-in backbones, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_backbones(register):
    """Register the built-in backbones (filled in as they land)."""
