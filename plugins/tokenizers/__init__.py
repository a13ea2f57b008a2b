"""efm's built-in tokenizers (representations), registered through the `efm` entry-point group.

Image family (EPI-250k, flash-eeg compatible; ``[B, C, T]`` -> ``[B, C, H, W]``): ``spectrogram``,
``morlet``, ``wpli`` (``[B, 1, H, W]``), ``temporal_matrix``, ``bandpass`` (``[B, C, T]``, a filter
stage), ``stack`` (``[B, n_repr, C, H, W]``). Token family (DIVER-1): ``patch``.

Builders import torch lazily; the config schemas live in :mod:`efm_plugins.tokenizers.config`.
"""

from __future__ import annotations

import efm
from efm.registry import Lazy

# options that efm.assemble derives from the pipeline; None (built alone): the class default
_DERIVED = ("sfreq", "n_times")
_CLASSES = {
    "patch": "patch:PatchTokenizer",
    "spectrogram": "spectrogram:Spectrogram",
    "morlet": "morlet:Morlet",
    "wpli": "wpli:WPLI",
    "temporal_matrix": "temporal:TemporalMatrix",
    "bandpass": "temporal:Bandpass",
    "stack": "stack:Stack",
}


def _lazy(name: str) -> Lazy:
    return Lazy(f"efm_plugins.tokenizers.{_CLASSES[name]}", derived=_DERIVED)


@efm.hookimpl
def efm_register_tokenizers(register):
    """Register the built-in tokenizers."""
    from efm_plugins.tokenizers import config as c

    register("patch", _lazy("patch"), schema=c.PatchConfig, family="token")
    register("spectrogram", _lazy("spectrogram"), schema=c.SpectrogramConfig, family="image")
    register("morlet", _lazy("morlet"), schema=c.MorletConfig, family="image")
    register("wpli", _lazy("wpli"), schema=c.WPLIConfig, family="image")
    register(
        "temporal_matrix", _lazy("temporal_matrix"), schema=c.TemporalMatrixConfig, family="image"
    )
    register("bandpass", _lazy("bandpass"), schema=c.BandpassConfig, family="signal")
    register("stack", _lazy("stack"), schema=c.StackConfig, family="image")
