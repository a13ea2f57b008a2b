"""efm's built-in objectives, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm


@efm.hookimpl
def efm_register_objectives(register):
    """Register the built-in objectives (filled in as they land)."""
    from efm_plugins.objectives.mae_config import MAEConfig

    register("mae", _build_mae, MAEConfig)
    from efm_plugins.objectives.multi_domain_config import MultiDomainConfig

    register("multi_domain", _build_multi_domain, MultiDomainConfig)


def _build_multi_domain(**cfg):
    from efm_plugins.objectives.multi_domain import build

    return build(**cfg)


def _build_mae(**cfg):
    from efm_plugins.objectives.mae import build

    return build(**cfg)
