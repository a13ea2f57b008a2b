"""An example efm plugin: registers the ``convnet_*`` backbones and the ``example-convnet`` recipe.

Cheap to import: torch is imported by the builder, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import efm


@dataclass
class ConvNetConfig:
    """Options of the example backbone.

    ``in_chans`` and ``input_size``: None = derived from the representation's output by efm's
    assembly (``efm.assemble``), like Hiera's. ``width`` and ``depth``: None = the registered size's.
    """

    in_chans: int | None = None
    input_size: tuple[int, int] | None = None
    width: int | None = None
    depth: int | None = None
    patch: int = 16


def _builder(width: int, depth: int):
    """A builder that only sets numbers: one size of :class:`efm_example.convnet.ConvNet`."""

    def build(**cfg):
        from efm_example.convnet import ConvNet

        sized = {"width": width, "depth": depth, "in_chans": 8, "input_size": (224, 224)}
        return ConvNet(
            **{k: v if v is not None else sized.get(k) for k, v in (sized | cfg).items()}
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
