"""efm's built-in objectives, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

import efm
from efm.registry import Lazy


@efm.hookimpl
def efm_register_objectives(register):
    """Register the built-in objectives: Hiera-MAE and DIVER-1's multi-domain reconstruction."""
    from efm_plugins.objectives.mae_config import MAEConfig
    from efm_plugins.objectives.multi_domain_config import MultiDomainConfig

    register("mae", Lazy("efm_plugins.objectives.mae:MAE"), MAEConfig)
    register("multi_domain", Lazy("efm_plugins.objectives.multi_domain:build"), MultiDomainConfig)
