"""Install throw-away plugin distributions on sys.path for tests (a dist-info folder and a module)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

FAKE_PLUGIN = """
from dataclasses import dataclass
import efm

@dataclass
class TinyConfig:
    width: int = 4
    depth: int = 1

class Rep:
    family = "image"
    def __init__(self, **cfg): self.cfg = cfg

def build(**cfg):
    return ("built", cfg)

@efm.hookimpl
def efm_register_readers(register):
    register("{prefix}reader", build, extensions=(".xyz",))

@efm.hookimpl
def efm_register_tokenizers(register):
    register("{prefix}image", Rep, family="image")
    register("{prefix}tokens", Rep, family="token")

@efm.hookimpl
def efm_register_backbones(register):
    register("{prefix}net", build, TinyConfig, accepts=("image",))

@efm.hookimpl
def efm_register_objectives(register):
    register("{prefix}loss", build)

@efm.hookimpl
def efm_register_recipes(register):
    register("{prefix}recipe", {{
        "reader": {{"name": "{prefix}reader"}},
        "representation": {{"name": "{prefix}image"}},
        "backbone": {{"name": "{prefix}net", "width": 8}},
        "objective": {{"name": "{prefix}loss"}},
        "train": {{"steps": 5}},
        "profiles": {{"demo": {{"train": {{"batch_size": 2}}}}}},
    }}, description="a test recipe")

@efm.hookimpl
def efm_register_tasks(register):
    register("{prefix}task", {{
        "labels": "file", "classes": ["a", "b"], "label_map": {{"_a": "a", "_b": "b"}},
    }}, description="a test task")
"""


def install(tmp: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """Make ``module`` importable from ``tmp`` and announce it in group ``efm`` as distribution ``dist``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[efm]\n{ep_name or module} = {module}\n")
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    importlib.invalidate_caches()


def uninstall(tmp: Path, *modules: str) -> None:
    if str(tmp) in sys.path:
        sys.path.remove(str(tmp))
    for m in modules:
        sys.modules.pop(m, None)
    importlib.invalidate_caches()
