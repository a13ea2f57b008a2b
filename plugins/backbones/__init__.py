"""efm's built-in backbones, registered through the `efm` entry-point group like any plugin.

Every family registers its sizes the same way: one sized schema per name
(:func:`efm.registry.sized`: the size's numbers as defaults) and one lazy builder that receives the
schema's options.
"""

from __future__ import annotations

import efm
from efm.registry import Lazy, sized


@efm.hookimpl
def efm_register_backbones(register):
    """Register the built-in backbones: MOIRAI (DIVER-1) and Hiera sizes."""
    from efm_plugins.backbones.hiera_config import HIERA_SIZES, HieraConfig
    from efm_plugins.backbones.moirai_config import CONFIGS as _MOIRAI

    moirai = Lazy("efm_plugins.backbones.moirai:build")
    for name, schema in _MOIRAI.items():
        d = schema()
        about = f"MOIRAI any-variate encoder (DIVER-1), {d.d_model} wide, {d.n_layers} layers"
        register(name, moirai, schema, accepts=("token",), description=about)
    hiera = Lazy("efm_plugins.backbones.hiera:Hiera", derived=("input_size",))
    for size, numbers in HIERA_SIZES.items():
        about = f"Hiera ({size.replace('_', '-')} size), hierarchical ViT for 2D or 3D images"
        name = f"hiera_{size}"
        register(
            name, hiera, sized(HieraConfig, name, **numbers), accepts=("image",), description=about
        )
