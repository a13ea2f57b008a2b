"""Checkpoints: weights in safetensors, everything else in a ``weights_only``-loadable torch file.

``RUN/checkpoints/step-0000100/model.safetensors`` holds the objective's state (backbone, decoder,
representation buffers); ``state.pt`` holds the step, both optimizers and their schedules, the RNG
states (python, numpy, torch CPU and CUDA) and the data position (batches consumed), and is read back
with ``torch.load(weights_only=True)``. A checkpoint is written under a temporary name and renamed
when complete; ``RUN/checkpoints/latest`` names the newest.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from efm.errors import EfmError

log = logging.getLogger("efm.train.checkpoint")


def rng_state() -> dict[str, Any]:
    """Every RNG's state, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global state is what we save)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    legacy = {
        "bit_generator": "MT19937",
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    }
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizers: Any,
    data_position: int,
    keep: int = 2,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` and keep only the newest ``keep`` ones."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(
        {
            "step": step,
            "optimizers": optimizers.state_dict(),
            "rng": rng_state(),
            "data_position": data_position,
            "extra": extra or {},
        },
        tmp / "state.pt",
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (root / "latest.tmp").write_text(final.name, encoding="utf-8")
    os.replace(root / "latest.tmp", root / "latest")
    olds = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in olds[: max(0, len(olds) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", final)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = run_dir / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text(encoding="utf-8").strip()
        if (path / "state.pt").is_file():
            return path
    found = sorted(p for p in root.glob("step-*") if (p / "state.pt").is_file())
    return found[-1] if found else None


def load_weights(path: Path, model: nn.Module, strict: bool = True) -> None:
    """Load ``model.safetensors`` of checkpoint ``path`` into ``model``."""
    file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise EfmError(f"no weights at {file}")
    missing, unexpected = load_model(model, str(file), strict=False)
    if strict and (missing or unexpected):
        raise EfmError(
            f"checkpoint {file} does not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; was it trained with another recipe?"
        )


def load(path: Path, model: nn.Module, optimizers: Any) -> dict[str, Any]:
    """Restore weights and optimizer/schedule state; return the state (step, rng, data position)."""
    load_weights(path, model)
    state = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)
    optimizers.load_state_dict(state["optimizers"])
    return state
