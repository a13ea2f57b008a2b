"""Adapting an encoder to a downstream task: frozen embeddings, fine-tuning and LoRA.

- The encoder is built only through :func:`efm.assemble.assemble`, for the task's epochs (its
  ``sfreq``, epoch length and channel count), and loads a checkpoint with
  :func:`efm.train.checkpoint.load_weights`; the representation is called once per batch through
  :func:`efm.interfaces.represent`.
- ``linear``: embeddings of every epoch computed once (no gradients), then a logistic probe.
- ``finetune``: representation + backbone + a linear head trained together: AdamW (lower learning
  rate for the encoder than for the head, optional layer-wise decay), linear warmup then cosine
  (:func:`efm.train.optim.lr_factor`), class-balanced cross-entropy, early stopping on the
  validation loss (the best epoch's weights are kept), bf16 autocast on CUDA.
- ``lora``: the same loop with the encoder frozen and low-rank adapters (``peft``, extra
  ``efm[lora]``) on the attention and MLP projections of the backbone; only the adapters and the
  head train.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from efm.errors import EfmError
from efm.evaluate.config import FinetuneConfig
from efm.interfaces import represent

log = logging.getLogger("efm.evaluate.adapt")

__all__ = ["Classifier", "Curve", "FinetuneConfig", "add_lora", "embed", "train_classifier"]

# attention and MLP projections of the built-in backbones (MOIRAI, Hiera)
LORA_TARGETS = r".*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2|fc_gate|qkv|proj)$"


@dataclass
class Curve:
    """Per-epoch training curve of one fit."""

    val_loss_start: float = float("nan")  # before any step
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_balanced_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1


def data_spec_for(cfg: dict[str, Any], x: np.ndarray, sfreq: float) -> Any:
    """The :class:`efm.assemble.DataSpec` of a task's epochs ``[N, C, T]``."""
    from efm.assemble import DataSpec, data_spec

    base = data_spec(cfg, int(x.shape[1]))
    return DataSpec(
        sfreq=float(sfreq),
        n_times=int(x.shape[2]),
        n_chans=int(x.shape[1]),
        h_freq=base.h_freq,
        crops_s=base.crops_s,
        n_chans_source="the task's channels",
    )


def fit_length(cfg: dict[str, Any], x: np.ndarray, sfreq: float) -> tuple[np.ndarray, str]:
    """Epochs the recipe's backbone accepts: as they are when the backbone built for their length
    is the pretrained one (token models, fixed-size images); else tiled (repeated in time) to the
    recipe's epoch length, with a note saying so (a Hiera's input size follows the epoch length).
    """
    from efm.assemble import data_spec, plan

    own, _ = plan(cfg, data_spec_for(cfg, x, sfreq))
    ref, _ = plan(cfg, data_spec(cfg, int(x.shape[1])))
    if own.options.get("backbone") == ref.options.get("backbone"):
        return x, ""
    n = round(float(cfg["pipeline"]["epoch_s"]) * sfreq)
    idx = np.arange(n) % x.shape[2]
    note = (
        f"epochs of {x.shape[2] / sfreq:g} s were tiled to the recipe's {n / sfreq:g} s: "
        f"its backbone is built for that length"
    )
    return x[:, :, idx], note


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's CPU (and current CUDA) generators seeded with ``seed``, restored on exit: what runs
    inside draws the same numbers whatever ran before, and leaves the caller's draws untouched."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def build_encoder(
    cfg: dict[str, Any], x: np.ndarray, sfreq: float, checkpoint: Path | None, seed: int
) -> nn.Module:
    """The recipe's objective assembled for the task's epochs, with the checkpoint's weights."""
    from efm.assemble import assemble
    from efm.train import checkpoint as ckpt

    with seeded(seed):
        objective = assemble(cfg, data_spec_for(cfg, x, sfreq))
    if checkpoint is not None:
        ckpt.load_weights(Path(checkpoint), objective)
    return objective


def _embed(objective: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    if hasattr(objective, "embed"):
        return objective.embed(batch)  # type: ignore[operator, no-any-return]
    rep = represent(objective.representation, batch)
    return objective.backbone.embed(rep)  # type: ignore[operator, union-attr, no-any-return]


def _batch(x: np.ndarray, meta: dict[str, Any], device: torch.device) -> dict[str, Any]:
    signal = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device)  # [B, C, T] µV
    mask = torch.ones(signal.shape[:2], dtype=torch.bool, device=device)
    return {"signal": signal, "channel_mask": mask, "meta": [dict(meta) for _ in range(len(x))]}


def _amp(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_of() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def embed(
    objective: nn.Module, x: np.ndarray, meta: dict[str, Any], batch_size: int = 64
) -> np.ndarray:
    """Frozen embeddings ``[N, D]`` float32 of epochs ``[N, C, T]`` (µV)."""
    device = device_of()
    objective = objective.to(device).eval()
    out = []
    with _amp(device):
        for i in range(0, len(x), batch_size):
            z = _embed(objective, _batch(x[i : i + batch_size], meta, device))
            out.append(z.float().cpu().numpy())
    return np.concatenate(out)


class Classifier(nn.Module):
    """Representation + backbone (from an assembled objective) + a linear head."""

    def __init__(self, objective: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.representation: Any = objective.representation
        self.backbone: Any = objective.backbone
        dim = int(getattr(objective.backbone, "embed_dim"))  # noqa: B009
        self.head = nn.Linear(dim, n_classes)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        z = self.backbone.embed(represent(self.representation, batch))
        return self.head(z)  # type: ignore[no-any-return]


class SignalClassifier(nn.Module):
    """A model on raw epochs ``[B, C, T]`` (EEGNet) with the classifier's batch interface."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net(batch["signal"])  # type: ignore[no-any-return]


def add_lora(model: Classifier, fc: FinetuneConfig) -> list[str]:
    """Freeze the encoder and inject LoRA adapters (peft) into its projections; return targets."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise EfmError(f"the lora mode needs peft: pip install 'efm[lora]' ({exc})") from exc
    targets = [
        n for n, m in model.backbone.named_modules() if isinstance(m, nn.Linear)
        and re.fullmatch(LORA_TARGETS, "." + n)
    ]  # fmt: skip
    if not targets:
        raise EfmError("lora: the backbone has no attention/MLP projection to adapt")
    for p in model.parameters():
        p.requires_grad_(False)
    conf = LoraConfig(
        r=fc.lora_rank,
        lora_alpha=fc.lora_alpha,
        lora_dropout=fc.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    model.backbone = inject_adapter_in_model(conf, model.backbone)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n or n.startswith("head."))
    return targets


def _layer_of(name: str) -> int | None:
    m = re.search(r"(?:blocks|layers)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def param_groups(model: nn.Module, fc: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: the head at ``head_lr``; the encoder at ``lr`` times the layer-wise decay
    ``layer_decay ** (depth - layer)`` (stems below the first block get the deepest decay);
    no weight decay on biases and norms."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = [k for n, _ in named if (k := _layer_of(n)) is not None]
    depth = max(layers) + 1 if layers else 0
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for n, p in named:
        if n.startswith("head.") or isinstance(model, SignalClassifier):
            lr = fc.head_lr
        else:
            k = _layer_of(n)
            k = depth if "norm" in n and k is None and "backbone" in n else k
            lr = fc.lr * fc.layer_decay ** (depth - (k + 1 if k is not None else 0))
        wd = 0.0 if p.ndim < 2 else fc.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def _loss_and_proba(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    meta: dict[str, Any],
    weight: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> tuple[float, np.ndarray]:
    model.eval()
    losses, probs = [], []
    with torch.no_grad(), _amp(device):
        for i in range(0, len(x), batch_size):
            logits = model(_batch(x[i : i + batch_size], meta, device)).float()
            t = torch.from_numpy(y[i : i + batch_size]).to(device)
            losses.append(
                float(nn.functional.cross_entropy(logits, t, weight=weight, reduction="sum"))
            )
            probs.append(torch.softmax(logits, dim=1).cpu().numpy())
    return sum(losses) / max(len(x), 1), np.concatenate(probs)


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    meta: dict[str, Any],
    fc: FinetuneConfig,
    seed: int,
) -> Curve:
    """Train ``model`` on ``train`` with early stopping on ``val``'s loss; keep the best weights.

    Class-balanced cross-entropy (weights from the training labels), AdamW over
    :func:`param_groups`, warmup + cosine per step, gradient clipping. ``seed`` fixes the batch
    order and dropout, whatever ran before: a row's fine-tuning is the same in any order.
    """
    from efm.evaluate.metrics import balanced_accuracy, confusion
    from efm.train.optim import lr_factor

    if len(val) == 0:
        raise EfmError(
            "fine-tuning needs validation subjects for early stopping: a fold has a single "
            "training subject (use fewer folds or more subjects)"
        )
    device = device_of()
    model = model.to(device)
    k = int(y.max()) + 1
    counts = np.bincount(y[train], minlength=k).astype(float)
    weight = torch.tensor(counts.sum() / (k * counts.clip(1)), dtype=torch.float32, device=device)
    groups = param_groups(model, fc)
    if not groups:
        raise EfmError("nothing to train: every parameter is frozen")
    opt = torch.optim.AdamW(groups)
    base = [g["lr"] for g in groups]
    per_epoch = int(np.ceil(len(train) / fc.batch_size))
    if fc.max_steps_per_epoch:
        per_epoch = min(per_epoch, fc.max_steps_per_epoch)
    total = max(1, per_epoch * fc.epochs)
    warm = int(fc.warmup_frac * total)
    rng = np.random.default_rng(seed)
    curve, best, best_state, stale, step = Curve(), np.inf, None, 0, 0
    curve.val_loss_start, _ = _loss_and_proba(model, x[val], y[val], meta, weight, 64, device)
    with seeded(seed):  # dropout and anything else torch draws
        for epoch in range(fc.epochs):
            model.train()
            order = rng.permutation(train)
            run = []
            for b in range(per_epoch):
                idx = np.sort(order[b * fc.batch_size : (b + 1) * fc.batch_size])
                if idx.size == 0:
                    break
                f = lr_factor(step, warm, total, 0.01)
                for g, lr in zip(opt.param_groups, base):
                    g["lr"] = lr * f
                with _amp(device):
                    logits = model(_batch(x[idx], meta, device)).float()
                t = torch.from_numpy(y[idx]).to(device)
                loss = nn.functional.cross_entropy(logits, t, weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if fc.grad_clip > 0:
                    nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], fc.grad_clip)
                opt.step()
                run.append(float(loss.detach()))
                step += 1
            v_loss, v_proba = _loss_and_proba(model, x[val], y[val], meta, weight, 64, device)
            v_bacc = balanced_accuracy(confusion(y[val], v_proba.argmax(1), k))
            curve.train_loss.append(float(np.mean(run)) if run else float("nan"))
            curve.val_loss.append(v_loss)
            curve.val_balanced_accuracy.append(v_bacc)
            if v_loss < best - 1e-4:
                best, stale, curve.best_epoch = v_loss, 0, epoch
                best_state = copy.deepcopy(
                    {n: t.detach().cpu() for n, t in model.state_dict().items()}
                )
            else:
                stale += 1
                if stale >= fc.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return curve


def predict(
    model: nn.Module, x: np.ndarray, meta: dict[str, Any], batch_size: int = 64
) -> np.ndarray:
    """Class probabilities ``[N, K]``."""
    device = device_of()
    model = model.to(device).eval()
    out = []
    with torch.no_grad(), _amp(device):
        for i in range(0, len(x), batch_size):
            logits = model(_batch(x[i : i + batch_size], meta, device)).float()
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.concatenate(out)
