"""efm's built-in backbones, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_backbones(register):
    """Register the built-in backbones (filled in as they land)."""
    from efm_plugins.backbones.moirai_config import CONFIGS as _MOIRAI

    for _name, _schema in _MOIRAI.items():
        register(_name, _build_moirai, _schema, accepts=("token",))


def _build_moirai(**cfg):
    from efm_plugins.backbones.moirai import build

    return build(**cfg)
