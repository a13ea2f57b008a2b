"""efm's built-in backbones, registered through the `efm` entry-point group like any plugin."""

from __future__ import annotations

from functools import partial

import efm


@efm.hookimpl
def efm_register_backbones(register):
    """Register the built-in backbones (filled in as they land)."""
    from efm_plugins.backbones.moirai_config import CONFIGS as _MOIRAI

    for _name, _schema in _MOIRAI.items():
        _d = _schema()
        _about = f"MOIRAI any-variate encoder (DIVER-1), {_d.d_model} wide, {_d.n_layers} layers"
        register(_name, _build_moirai, _schema, accepts=("token",), description=_about)
    from efm_plugins.backbones.hiera_config import HIERA_SIZES, HieraConfig

    for _size in HIERA_SIZES:
        _about = f"Hiera ({_size.replace('_', '-')} size), hierarchical ViT for 2D or 3D images"
        register(
            f"hiera_{_size}",
            partial(_build_hiera, _size),
            HieraConfig,
            accepts=("image",),
            description=_about,
        )


def _build_hiera(size, **cfg):
    from efm_plugins.backbones import hiera

    if cfg.get("input_size") is None:  # built alone (not through efm.assemble): the default size
        cfg.pop("input_size", None)
    return getattr(hiera, f"hiera_{size}")(**cfg)


def _build_moirai(**cfg):
    from efm_plugins.backbones.moirai import build

    return build(**cfg)
