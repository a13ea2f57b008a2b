"""efm's built-in objectives, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_objectives(register):
    """Register the built-in objectives (filled in as they land)."""
    from efm_plugins.objectives.mae_config import MAEConfig

    register("mae", _build_mae, MAEConfig)


def _build_mae(**cfg):
    from efm_plugins.objectives.mae import build

    return build(**cfg)
