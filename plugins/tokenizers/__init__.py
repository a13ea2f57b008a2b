"""efm's built-in tokenizers, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_tokenizers(register):
    """Register the built-in tokenizers (filled in as they land)."""
