"""efm's built-in tokenizers (representations), registered through the `efm` entry-point group.

Image family (EPI-250k, flash-eeg compatible; ``[B, C, T]`` -> ``[B, C, H, W]``): ``spectrogram``,
``morlet``, ``wpli`` (``[B, 1, H, W]``), ``temporal_matrix``, ``bandpass`` (``[B, C, T]``, a filter
stage), ``stack`` (``[B, n_repr, C, H, W]``). Token family (DIVER-1): ``patch``.

Builders import torch lazily; the config schemas live in :mod:`efm_plugins.tokenizers.config`.
"""

from __future__ import annotations

from typing import Any

import efm

# options that efm.assemble derives from the pipeline; None (built alone): the class default
_DERIVED = ("sfreq", "n_times")


def _given(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if not (k in _DERIVED and v is None)}


def _patch(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.patch import PatchTokenizer

    return PatchTokenizer(**_given(cfg))


def _spectrogram(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.spectrogram import Spectrogram

    return Spectrogram(**_given(cfg))


def _morlet(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.morlet import Morlet

    return Morlet(**_given(cfg))


def _wpli(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.wpli import WPLI

    return WPLI(**_given(cfg))


def _temporal_matrix(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.temporal import TemporalMatrix

    return TemporalMatrix(**_given(cfg))


def _bandpass(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.temporal import Bandpass

    return Bandpass(**_given(cfg))


def _stack(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.stack import Stack

    return Stack(**_given(cfg))


@efm.hookimpl
def efm_register_tokenizers(register):
    """Register the built-in tokenizers."""
    from efm_plugins.tokenizers import config as c

    register("patch", _patch, schema=c.PatchConfig, family="token")
    register("spectrogram", _spectrogram, schema=c.SpectrogramConfig, family="image")
    register("morlet", _morlet, schema=c.MorletConfig, family="image")
    register("wpli", _wpli, schema=c.WPLIConfig, family="image")
    register("temporal_matrix", _temporal_matrix, schema=c.TemporalMatrixConfig, family="image")
    register("bandpass", _bandpass, schema=c.BandpassConfig, family="signal")
    register("stack", _stack, schema=c.StackConfig, family="image")
