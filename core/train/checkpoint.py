"""Checkpoints: weights in safetensors, everything else in a ``weights_only``-loadable torch file.

``RUN/checkpoints/step-0000100/model.safetensors`` holds the objective's state (backbone, decoder,
representation buffers); ``state.pt`` holds the step, both optimizers and their schedules, the RNG
states (python, numpy, torch CPU and CUDA) and the data position (batches consumed), and is read back
with ``torch.load(weights_only=True)``. A checkpoint is written under a temporary name and renamed
when complete; ``RUN/checkpoints/latest`` names the newest.

The safetensors metadata key ``efm.architecture`` records, per submodule that has an
``architecture()`` method (e.g. a Hiera backbone), the options that decide what its weights compute
but change no parameter shape (``q_pool`` ...); loading into a model built otherwise is refused.
A damaged or foreign file is one :class:`~efm.errors.EfmError` naming it and the reason.

Sharded checkpoints (``train.strategy=fsdp``): ``step-N/dcp/`` holds every rank's shards of the
weights and optimizer state (``torch.distributed.checkpoint``), ``state.pt`` the rest; the last
checkpoint of a run also gets the gathered ``model.safetensors``, and :func:`consolidate` writes it
for any other one in a single process.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
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
    final = step_dir(run_dir, step)
    tmp = final.with_name(f".tmp-{final.name}")
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"), metadata=_metadata(model))
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
    _publish(root, tmp, final, keep)
    return final


# -- sharded checkpoints (FSDP2) ---------------------------------------------------------------
SHARDED = "dcp"  # the torch.distributed.checkpoint folder inside a sharded checkpoint


def save_sharded(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizers: Any,
    data_position: int,
    keep: int = 2,
    extra: dict[str, Any] | None = None,
    *,
    full_weights: bool = False,
) -> Path:
    """Write the checkpoint of ``step`` of an FSDP2-sharded model; every rank calls it.

    Each rank writes its shards of the weights and optimizer state through
    ``torch.distributed.checkpoint`` (``step-N/dcp/``); rank 0 writes ``state.pt`` (step, schedules,
    RNG states, data position) and, with ``full_weights``, the gathered weights as
    ``model.safetensors`` (what evaluation reads; :func:`consolidate` makes it later otherwise).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank = torch.distributed.get_rank()
    final = step_dir(run_dir, step)
    tmp, root = final.with_name(f".tmp-{final.name}"), final.parent
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    torch.distributed.barrier()
    msd, osd = get_state_dict(model, optimizers.optimizers)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / SHARDED))
    if full_weights:
        write_full_weights(model, tmp / "model.safetensors")
    if rank == 0:
        torch.save(
            {
                "step": step,
                "optimizers": {"schedulers": [s.state_dict() for s in optimizers.schedulers]},
                "rng": rng_state(),
                "data_position": data_position,
                "extra": {**(extra or {}), "sharded": True, "metadata": _metadata(model)},
            },
            tmp / "state.pt",
        )
        _publish(root, tmp, final, keep)
    torch.distributed.barrier()
    return final


def write_full_weights(model: nn.Module, file: Path) -> None:
    """Gather a sharded model's full weights (a collective) and write them on rank 0."""
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)
    if torch.distributed.get_rank() == 0:
        tensors = {k: v.contiguous() for k, v in full.items() if isinstance(v, torch.Tensor)}
        save_file(tensors, str(file), metadata=_metadata(model))


def load_sharded(path: Path, model: nn.Module, optimizers: Any) -> dict[str, Any]:
    """Restore an FSDP2-sharded model and its optimizers from a sharded checkpoint (every rank)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = load_state(path)
    folder = Path(path) / SHARDED
    if not folder.is_dir():
        raise EfmError(
            f"checkpoint {path} is not sharded (no {SHARDED}/): it was written without "
            "train.strategy=fsdp; resume with the strategy it was trained with"
        )
    msd, osd = get_state_dict(model, optimizers.optimizers)
    try:
        dcp.load({"model": msd, "optim": osd}, checkpoint_id=str(folder))  # in place
        set_state_dict(model, optimizers.optimizers, model_state_dict=msd, optim_state_dict=osd)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EfmError(
            f"sharded checkpoint {folder} does not fit this model ({_reason(exc)}); was it "
            "trained with another recipe?"
        ) from None
    for sch, s in zip(optimizers.schedulers, state["optimizers"]["schedulers"]):
        sch.load_state_dict(s)
    return state


def consolidate(path: Path, out: Path | None = None) -> Path:
    """One ``model.safetensors`` from a sharded checkpoint, in one process (no process group).

    Parameters
    ----------
    path : path
        A checkpoint folder written with ``train.strategy=fsdp`` (``step-N/``).
    out : path, optional
        The file to write; default ``path/model.safetensors`` (what evaluation reads).
    """
    import tempfile

    from safetensors.torch import save_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    path = Path(path)
    folder = path / SHARDED
    if not folder.is_dir():
        raise EfmError(f"{path} is not a sharded checkpoint (no {SHARDED}/ folder)")
    out = Path(out) if out is not None else path / "model.safetensors"
    meta = ((load_state(path).get("extra") or {}).get("metadata")) or {}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        whole = Path(tmp) / "whole.pt"
        dcp_to_torch_save(str(folder), str(whole))
        model = torch.load(whole, map_location="cpu", weights_only=True)["model"]
        part = Path(tmp) / out.name
        save_file({k: v.contiguous() for k, v in model.items()}, str(part), metadata=meta)
        os.replace(part, out)
    log.info("consolidated %s into %s", folder, out)
    return out


def _publish(root: Path, tmp: Path, final: Path, keep: int) -> None:
    """Rename a complete checkpoint into place, point ``latest`` at it, drop the oldest."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (root / "latest.tmp").write_text(final.name, encoding="utf-8")
    os.replace(root / "latest.tmp", root / "latest")
    olds = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in olds[: max(0, len(olds) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", final)


def step_dir(run_dir: Path, step: int) -> Path:
    """Where a run keeps the checkpoint of ``step``."""
    return Path(run_dir) / "checkpoints" / f"step-{step:07d}"


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


ARCHITECTURE_KEY = "efm.architecture"


def architectures(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{submodule name: its architecture()}`` for every submodule that declares one."""
    found = {}
    for name, module in model.named_modules():
        describe = getattr(module, "architecture", None)
        if callable(describe):
            found[name or "."] = describe()
    return found


def _metadata(model: nn.Module) -> dict[str, str]:
    arch = architectures(model)
    return {ARCHITECTURE_KEY: json.dumps(arch, sort_keys=True)} if arch else {}


def check_architecture(file: Path, model: nn.Module) -> None:
    """Refuse weights saved by a model whose recorded architecture differs from ``model``'s."""
    try:
        with safe_open(str(file), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise EfmError(
            f"weights {file}: not a readable safetensors file ({_reason(exc)})"
        ) from None
    if ARCHITECTURE_KEY not in meta:
        return  # saved before efm recorded architectures, or by another tool: shapes only
    try:
        saved = json.loads(meta[ARCHITECTURE_KEY])
    except json.JSONDecodeError:
        raise EfmError(f"weights {file}: its {ARCHITECTURE_KEY} metadata is not JSON") from None
    ours = architectures(model)
    problems = []
    for name in sorted(set(saved) & set(ours)):
        for key in sorted(set(saved[name]) | set(ours[name])):
            a, b = saved[name].get(key), ours[name].get(key)
            if a != b:
                where = key if name == "." else f"{name}.{key}"
                problems.append(f"{where}={json.dumps(a)} (this model: {json.dumps(b)})")
    if problems:
        raise EfmError(
            f"weights {file} were saved by another architecture: {', '.join(problems)}; "
            f"build the model with the saved values (e.g. the recipe's backbone.KEY=VALUE)"
        )


def load_weights(path: Path, model: nn.Module, strict: bool = True) -> None:
    """Load ``model.safetensors`` of checkpoint ``path`` into ``model``."""
    file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
    if not file.is_file() and (Path(path) / SHARDED).is_dir():  # sharded (FSDP2): one file first
        consolidate(Path(path))
    if not file.is_file():
        raise EfmError(f"no weights at {file}")
    check_architecture(file, model)
    try:
        missing, unexpected = load_model(model, str(file), strict=False)
    except (SafetensorError, OSError, ValueError) as exc:
        raise EfmError(
            f"weights {file}: not a readable safetensors file ({_reason(exc)})"
        ) from None
    except RuntimeError as exc:  # shape mismatches
        raise EfmError(
            f"weights {file} do not fit the model ({_reason(exc)}); was it trained with another "
            f"recipe?"
        ) from None
    if strict and (missing or unexpected):
        raise EfmError(
            f"checkpoint {file} does not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; was it trained with another recipe?"
        )


STATE_KEYS = ("step", "optimizers", "rng", "data_position")


def load_state(path: Path) -> dict[str, Any]:
    """Read ``state.pt`` of checkpoint ``path`` with safe (``weights_only``) loading.

    A damaged, truncated or foreign file is an :class:`EfmError` naming the file; the message
    never suggests turning safe loading off (a tampered checkpoint can run code when unpickled).
    """
    file = Path(path) / "state.pt"
    fix = "delete that checkpoint folder to resume from an earlier one, or start a new run"
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EfmError(f"checkpoint state {file} is missing; {fix}") from None
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if detail.startswith("Unsupported global"):  # a class safe loading refuses to build
            raise EfmError(
                f"checkpoint state {file} holds objects that safe loading refuses "
                f"({detail.split(':', 1)[-1].strip()[:120]}): it was not written by efm or has "
                f"been modified; {fix}"
            ) from None
        raise EfmError(
            f"checkpoint state {file} is not a readable torch file ({detail}); {fix}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        raise EfmError(
            f"checkpoint state {file} is not a readable torch file ({_reason(exc)}); {fix}"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise EfmError(
            f"checkpoint state {file} is not an efm training state (needs {list(STATE_KEYS)}, "
            f"has {have}); {fix}"
        )
    return state


def load(path: Path, model: nn.Module, optimizers: Any) -> dict[str, Any]:
    """Restore weights and optimizer/schedule state; return the state (step, rng, data position)."""
    state = load_state(path)
    load_weights(path, model)
    try:
        optimizers.load_state_dict(state["optimizers"])
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise EfmError(
            f"checkpoint state {Path(path) / 'state.pt'}: its optimizer state does not match this "
            f"run's ({_reason(exc)}); was it trained with another recipe?"
        ) from None
    return state


def _unpickler_detail(exc: BaseException) -> str:
    """The reason inside torch's safe-loading error (its surrounding text advises unsafe loading)."""
    text = str(exc)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [x.strip() for x in rest.splitlines() if x.strip()] if found else []
    return lines[0][:200] if lines else _reason(exc)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, never advice to disable safe loading."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "weights_only" in text:
        return "it holds objects that safe loading refuses"
    return text[:200]
