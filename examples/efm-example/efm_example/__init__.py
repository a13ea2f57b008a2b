"""An example efm plugin: registers the ``convnet_*`` backbones and the ``example-convnet`` recipe.

Cheap to import: torch is imported when a model is built (``Lazy``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import efm


@dataclass
class ConvNetConfig:
    """Options of the example backbone (the same names and defaults as ``ConvNet``'s constructor).

    ``in_chans`` and ``input_size``: None = derived from the representation's output by efm's
    assembly (``efm.assemble``), like Hiera's. ``width`` and ``depth``: each registered size's
    numbers (``efm.registry.sized``).
    """

    in_chans: int | None = None
    input_size: tuple[int, int] | None = None
    width: int = 64
    depth: int = 2
    patch: int = 16


@efm.hookimpl
def efm_register_backbones(register):
    """Two sizes of the example backbone; ``convnet_test`` is the tiny one every suite runs."""
    from efm.registry import Lazy, sized

    build = Lazy("efm_example.convnet:ConvNet", derived=("in_chans", "input_size"))
    for name, numbers in {"convnet_test": (16, 1), "convnet_small": (96, 4)}.items():
        width, depth = numbers
        schema = sized(ConvNetConfig, name, width=width, depth=depth)
        register(
            name, build, schema, accepts=("image",), description=f"Example ConvNet, {width} wide"
        )


@efm.hookimpl
def efm_register_recipes(register):
    """A recipe shipped as package data."""
    register(
        "example-convnet",
        Path(__file__).with_name("recipe.yaml"),
        description="Example plugin: the EPI-250k setup with the example ConvNet backbone",
    )
