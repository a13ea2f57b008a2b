"""efm's built-in tokenizers (representations), registered through the `efm` entry-point group.

Image family (EPI-250k, flash-eeg compatible; ``[B, C, T]`` -> ``[B, C, H, W]``): ``spectrogram``,
``morlet``, ``wpli`` (``[B, 1, H, W]``), ``temporal_matrix``, ``bandpass`` (``[B, C, T]``, a filter
stage), ``stack`` (``[B, n_repr, C, H, W]``). Token family (DIVER-1): ``patch``.

Builders import torch lazily; the config schemas live in :mod:`efm_plugins.tokenizers.config`.
"""

from __future__ import annotations

from typing import Any

import efm


def _patch(**cfg: Any) -> Any:
    from efm_plugins.tokenizers.patch import PatchTokenizer

    return PatchTokenizer(**cfg)


@efm.hookimpl
def efm_register_tokenizers(register):
    """Register the built-in tokenizers."""
    from efm_plugins.tokenizers import config as c

    register("patch", _patch, schema=c.PatchConfig, family="token")
