"""What a sweep records per run: parameters ``N``, training FLOPs ``C`` and the validation loss.

``N`` (:func:`non_embedding_params`) counts the backbone's parameters less its embeddings (patch,
token and position embeddings, ``nn.Embedding`` tables), as Kaplan et al. (2020) do; the objective's
decoder and heads are reported separately (``n_total``).

``C`` (:func:`training_flops_per_sample`) is analytic: one forward pass of the objective on real
samples, with the textbook count of each matrix product taken from the shapes it sees: ``2 * in *
out`` per output position of an ``nn.Linear``, ``2 * (C_in / groups) * prod(kernel)`` per output
element of a convolution, ``4 * L_q * L_k * d`` per head of ``F.scaled_dot_product_attention``
(scores and the weighted sum). A training step costs three forward passes (the backward pass is two:
gradients of inputs and of weights), so ``C = 3 * forward FLOPs per sample * D``. Element-wise work
(norms, activations, the representation's FFTs) is left out, as in ``C ≈ 6 N D``. A test checks the
count against :class:`torch.utils.flop_counter.FlopCounterMode`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("efm.scale.measure")

EMBEDDING = re.compile(r"(^|\.)(\w*embed\w*|\w*embedding\w*|pos_\w+|cls_token|mask_token)(\.|$)")


def non_embedding_params(module: nn.Module) -> int:
    """Trainable parameters of ``module`` outside embeddings (``nn.Embedding``, ``*embed*`` names)."""
    skip = {id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if p.requires_grad and id(p) not in skip and not EMBEDDING.search(name)
    )


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@contextlib.contextmanager
def _counting(model: nn.Module, total: list[float]) -> Iterator[None]:
    """Add each matrix product's FLOPs to ``total[0]`` while the context is open."""

    def linear(m: Any, inp: Any, out: torch.Tensor) -> None:
        total[0] += 2.0 * m.in_features * out.numel()

    def conv(m: Any, inp: Any, out: torch.Tensor) -> None:
        k = math.prod(m.kernel_size)
        total[0] += 2.0 * (m.in_channels // m.groups) * k * out.numel()

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.modules.conv._ConvNd):
            hooks.append(m.register_forward_hook(conv))
    sdpa = F.scaled_dot_product_attention

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *a: Any, **kw: Any) -> Any:
        # q [..., Lq, d], k [..., Lk, d], v [..., Lk, dv]: scores then the weighted sum
        batch_heads = math.prod(q.shape[:-2])
        total[0] += 2.0 * batch_heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return sdpa(q, k, v, *a, **kw)

    F.scaled_dot_product_attention = attention  # type: ignore[assignment]
    try:
        yield
    finally:
        F.scaled_dot_product_attention = sdpa
        for h in hooks:
            h.remove()


def forward_flops(objective: nn.Module, batch: dict[str, Any]) -> float:
    """Analytic FLOPs of one forward pass of ``objective`` on ``batch`` (matrix products only)."""
    total = [0.0]
    with torch.random.fork_rng(), torch.no_grad(), _counting(objective, total):
        torch.manual_seed(0)
        objective(batch)
    return total[0]


def training_flops_per_sample(objective: nn.Module, batch: dict[str, Any]) -> float:
    """``3 x`` the forward FLOPs per sample (forward, and a backward pass of twice its cost)."""
    return 3.0 * forward_flops(objective, batch) / int(batch["signal"].shape[0])


def validation_loss(
    objective: nn.Module, shards: str | Path, batch_size: int, max_epochs: int = 0, seed: int = 0
) -> float:
    """Mean of the objective's loss over a shard directory, in eval mode, without gradients.

    The random masks of masked objectives are drawn from ``seed``, so every run of a sweep is
    scored on the same samples with the same masks. Weighted by batch size.
    """
    from efm.train.loader import iter_epochs
    from efm.train.loop import to_device

    device = next(objective.parameters()).device
    was = objective.training
    objective.eval()
    total, count = 0.0, 0
    try:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            for batch in iter_epochs(shards, batch_size, max_epochs):
                out = objective(to_device(batch, device))
                b = int(batch["signal"].shape[0])
                total += float(out.loss) * b
                count += b
    finally:
        objective.train(was)
    if count == 0:
        from efm.errors import EfmError

        raise EfmError(f"no validation epochs could be read from {shards}")
    return total / count
