"""An example efm plugin: registers the ``convnet_*`` backbones and the ``example-convnet`` recipe.

Cheap to import: torch is imported by the builder, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import efm


@dataclass
class ConvNetConfig:
    """Options of the example backbone."""

    in_chans: int = 8
    input_size: tuple[int, int] = (224, 224)
    width: int = 64
    depth: int = 2
    patch: int = 16


def _builder(width: int, depth: int):
    def build(**cfg):
        from efm_example.convnet import ConvNet

        return ConvNet(
            **(cfg | {"width": cfg.get("width", width), "depth": cfg.get("depth", depth)})
        )

    return build


@efm.hookimpl
def efm_register_backbones(register):
    """Two sizes of the example backbone; ``convnet_test`` is the tiny one every suite runs."""
    register("convnet_test", _builder(16, 1), ConvNetConfig, accepts=("image",))
    register("convnet_small", _builder(96, 4), ConvNetConfig, accepts=("image",))


@efm.hookimpl
def efm_register_recipes(register):
    """A recipe shipped as package data."""
    register(
        "example-convnet",
        Path(__file__).with_name("recipe.yaml"),
        description="Example plugin: the EPI-250k setup with the example ConvNet backbone",
    )
