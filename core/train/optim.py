"""Muon for hidden weight matrices, AdamW for the rest, one warmup + cosine schedule, one global clip.

Which parameter goes where is decided by **role**, not by ``p.ndim`` (reference/architectures.md
§4.2). A component states the roles of its parameters through the optional ``param_groups()``
capability (:class:`efm.interfaces.SupportsParamGroups`; efm's Hiera, MOIRAI, MAE and multi-domain
objective do); the outermost declaration of a parameter wins, and a declared ``muon`` parameter
still needs to be 2-D. Parameters no component declares (a third-party plugin that states nothing)
follow the default rule, applied to every ``(name, parameter)`` of the objective (which owns the
backbone, the representation and any decoder):

1. Muon takes the ``weight`` of an ``nn.Linear`` module, and nothing else: attention q/k/v/out
   projections, MLP matrices, Hiera's stage ``proj``, decoder blocks, a decoder's input projection.
2. ...unless that module plays an input or output role, which sends it to AdamW:
   - it (or an ancestor) sets ``efm_optim = "adamw"`` (how a plugin declares a role explicitly);
   - a component of its dotted name is an input-layer name (``patch_embed``, ``stem``, ``embed``,
     ``embedding(s)``, ``input_proj``, ``in_proj``, ``tokenizer``, ``patchify``) or an output-layer name
     (``head``, ``heads``, ``decoder_pred``, ``pred``, ``readout``, ``classifier``, ``output_proj``,
     ``recon_head(s)``);
   - it lives in the representation (``representation.*``).
3. AdamW takes everything else: biases, norm gains, embedding tables (``nn.Embedding`` weights such
   as MOIRAI's binary attention bias, which is 2-D), position embeddings, mask/register tokens,
   convolution filters (stems, multi-scale fusion), heads. Weight decay applies only to AdamW's
   ``ndim >= 2`` weights of ``nn.Linear`` / convolution modules; biases, norms, tables and tokens get
   none.

With ``use_muon=False`` every parameter goes to AdamW (same decay rule).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from efm.interfaces import SupportsParamGroups

log = logging.getLogger("efm.train.optim")

_INPUT = (
    "patch_embed",
    "stem",
    "embed",
    "embedding",
    "embeddings",
    "input_proj",
    "in_proj",
    "tokenizer",
    "patchify",
)
_OUTPUT = (
    "head",
    "heads",
    "decoder_pred",
    "pred",
    "readout",
    "classifier",
    "output_proj",
    "recon_head",
    "recon_heads",
)
_ROLE_RE = re.compile(r"(^|\.)(" + "|".join(_INPUT + _OUTPUT) + r")(\.|$)")
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class ParamSplit:
    """The three parameter groups and the names in each (for logs and tests)."""

    muon: list[nn.Parameter] = field(default_factory=list)
    decay: list[nn.Parameter] = field(default_factory=list)
    no_decay: list[nn.Parameter] = field(default_factory=list)
    names: dict[str, list[str]] = field(
        default_factory=lambda: {"muon": [], "decay": [], "no_decay": []}
    )

    def add(self, group: str, name: str, p: nn.Parameter) -> None:
        getattr(self, group).append(p)
        self.names[group].append(name)


def declared_groups(model: nn.Module) -> dict[str, str]:
    """Full parameter name -> ``"muon"`` | ``"adamw"`` from the components that declare their own
    (:class:`efm.interfaces.SupportsParamGroups`); the outermost declaration wins."""
    declared: dict[str, str] = {}
    for mname, module in model.named_modules():  # pre-order: outer components first
        if isinstance(module, SupportsParamGroups):
            for pname, group in module.param_groups().items():
                if group not in ("muon", "adamw"):
                    raise ValueError(
                        f"{type(module).__name__}.param_groups(): {pname!r} -> {group!r}; "
                        "options: muon, adamw"
                    )
                declared.setdefault(f"{mname}.{pname}" if mname else pname, group)
    return declared


def split_params(model: nn.Module, use_muon: bool = True) -> ParamSplit:
    """Assign every trainable parameter of ``model`` to ``muon``, ``decay`` or ``no_decay`` by role."""
    split = ParamSplit()
    declared = declared_groups(model)
    adamw_forced: set[str] = set()
    for mname, module in model.named_modules():
        if getattr(module, "efm_optim", None) == "adamw":
            adamw_forced.add(mname)
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mname}.{pname}" if mname else pname
            is_matrix = pname == "weight" and isinstance(module, nn.Linear)
            is_conv = pname == "weight" and isinstance(module, _CONV)
            if full in declared:
                to_muon = declared[full] == "muon"
            else:
                forced = any(
                    mname == f or mname.startswith(f + ".") or f == "" for f in adamw_forced
                )
                role = bool(_ROLE_RE.search(mname)) or mname.split(".")[0] == "representation"
                to_muon = is_matrix and not forced and not role
            if use_muon and to_muon and p.ndim == 2:
                split.add("muon", full, p)
            elif (is_matrix or is_conv) and p.ndim >= 2:
                split.add("decay", full, p)
            else:
                split.add("no_decay", full, p)
    return split


def _adamw_groups(model: nn.Module, split: ParamSplit, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decayed and not, each split by the model's muP ``lr_multipliers()`` if any.

    A group with multiplier ``m`` gets ``lr_mult = m`` and weight decay ``wd / m`` (``mup.MuAdamW``:
    ``lr * wd`` stays constant). Muon's matrices take no multiplier (its update is width-stable).
    """
    mults_fn = getattr(model, "lr_multipliers", None)
    mults: dict[str, float] = dict(mults_fn()) if callable(mults_fn) else {}
    groups: list[dict[str, Any]] = []
    for key, wd in (("decay", weight_decay), ("no_decay", 0.0)):
        by_mult: dict[float, list[nn.Parameter]] = {}
        for name, p in zip(split.names[key], getattr(split, key)):
            by_mult.setdefault(float(mults.get(name, 1.0)), []).append(p)
        for m in sorted(by_mult, reverse=True):
            groups.append({"params": by_mult[m], "weight_decay": wd / m, "lr_mult": m})
    return groups


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Optimizers:
    """Muon and AdamW stepped together, with one schedule and one global gradient clip.

    Parameters
    ----------
    model : nn.Module
        The objective (unwrapped: not the DDP wrapper).
    cfg : dict
        The resolved ``optim`` node (:class:`efm.train.config.OptimConfig`).
    total_steps : int
        Length of the schedule.
    """

    def __init__(self, model: nn.Module, cfg: dict[str, Any], total_steps: int) -> None:
        self.cfg = cfg
        self.split = split_params(model, use_muon=bool(cfg.get("use_muon", True)))
        self.params = [*self.split.muon, *self.split.decay, *self.split.no_decay]
        self.optimizers: list[torch.optim.Optimizer] = []
        if self.split.muon:
            self.optimizers.append(
                torch.optim.Muon(
                    self.split.muon,
                    lr=cfg["muon_lr"],
                    momentum=cfg["muon_momentum"],
                    weight_decay=cfg["muon_weight_decay"],
                    nesterov=True,
                )
            )
        groups = _adamw_groups(model, self.split, float(cfg["weight_decay"]))
        if groups:
            for g in groups:
                g["lr"] = float(cfg["adamw_lr"]) * g["lr_mult"]
            fused = all(p.is_cuda for p in self.params)
            self.optimizers.append(
                torch.optim.AdamW(
                    groups,
                    lr=cfg["adamw_lr"],
                    betas=tuple(cfg["adamw_betas"]),
                    eps=cfg["adamw_eps"],
                    fused=fused or None,
                )
            )

        def factor(step: int) -> float:
            return lr_factor(
                step, int(cfg["warmup_steps"]), total_steps, float(cfg["min_lr_ratio"])
            )

        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in self.optimizers]
        log.info(
            "optimizers: Muon on %d matrices (%d parameters), AdamW on %d tensors (%d parameters)",
            len(self.split.muon),
            sum(p.numel() for p in self.split.muon),
            len(self.split.decay) + len(self.split.no_decay),
            sum(p.numel() for p in self.split.decay + self.split.no_decay),
        )

    def clip_and_step(self) -> float:
        """Clip the global gradient norm over both optimizers' parameters once, then step both.

        Returns the gradient norm before clipping (computed before any optimizer touches ``.grad``).
        """
        clip = float(self.cfg.get("grad_clip") or 0.0)
        grads = [p for p in self.params if p.grad is not None]
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(grads, clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in grads if p.grad is not None])
        for opt in self.optimizers:
            opt.step()
        for sched in self.schedulers:
            sched.step()
        return float(norm)

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def lrs(self) -> dict[str, float]:
        """The current learning rate of each optimizer (``lr_muon``, ``lr_adamw``)."""
        out = {}
        for opt in self.optimizers:
            key = "lr_muon" if isinstance(opt, torch.optim.Muon) else "lr_adamw"
            out[key] = float(opt.param_groups[0]["lr"])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError("checkpoint has a different optimizer layout (Muon on/off?)")
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            sch.load_state_dict(s)
