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
    from efm_plugins.readers import _buffered

    register(
        "micromed",
        _build_micromed,
        _buffered.MicromedConfig,
        extensions=(".trc",),
        description="Micromed .TRC (type 4), buffered Neo-style rawio",
    )
    register(
        "nicolet",
        _build_nicolet,
        _buffered.NicoletConfig,
        extensions=(".e",),
        description="Nicolet/Nervus .e, buffered Neo-style rawio",
    )


def _build_micromed(**cfg):
    from efm_plugins.readers.micromed import MicromedReader

    return MicromedReader(**cfg)


def _build_nicolet(**cfg):
    from efm_plugins.readers.nicolet import NicoletReader

    return NicoletReader(**cfg)
