"""The shared backbone suite, run over every registered ``*_test`` backbone."""

from __future__ import annotations

from efm import registry
from efm.testing import BackboneSuite


class TestBackbones(BackboneSuite):
    names = registry.names("backbones", "*_test")
