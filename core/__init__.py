"""efm: a framework for EEG and iEEG foundation models.

The public API is small: :data:`hookimpl` for plugin authors, the interfaces in
:mod:`efm.interfaces`, and the registry functions below.
"""

from __future__ import annotations

from efm.hookspecs import hookimpl
from efm.registry import create, get_registry, names

__version__ = "0.1.0"
__all__ = ["__version__", "create", "get_registry", "hookimpl", "names"]
