"""Conformance suites and fixtures for plugin authors.

Subclass a suite in your plugin's tests and name the components to check::

    from efm.testing import BackboneSuite

    class TestMyBackbone(BackboneSuite):
        names = ["mamba_test"]

efm's own plugins pass the very same suites (``tests/plugins``).
"""

from efm.testing.ddp import check_distributed, unused_problems
from efm.testing.suites import (
    BackboneSuite,
    ObjectiveSuite,
    ReaderSuite,
    TokenizerSuite,
    requires_cuda,
    synthetic_recording,
)
from efm.testing.tasks import TaskSuite

__all__ = [
    "BackboneSuite",
    "ObjectiveSuite",
    "ReaderSuite",
    "TaskSuite",
    "TokenizerSuite",
    "check_distributed",
    "requires_cuda",
    "synthetic_recording",
    "unused_problems",
]
