"""efm's built-in readers, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_readers(register):
    """Register the built-in readers (their heavy imports happen inside the readers)."""
    from efm_plugins.readers import mne_reader

    register(
        "mne",
        mne_reader.build,
        mne_reader.MneReaderConfig,
        extensions=mne_reader.EXTENSIONS,
        description="every format mne.io.read_raw reads",
    )
