"""efm's built-in readers, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_readers(register):
    """Register the built-in readers (filled in as they land)."""
