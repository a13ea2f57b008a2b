"""CUDA conformance: what only a GPU can show. Skipped without a CUDA device.

Run on a GPU machine by ``benchmarks/device_run.sh`` (part ``tests``), together with the other
tests marked for CUDA (FlexAttention's backward in ``tests/plugins/test_moirai.py``):

- every representation on CUDA equals its CPU output (cuFFT vs MKL/pocketfft), eager and compiled
  by inductor (``fullgraph=True``), in fp32 and bf16;
- every backbone family's test size runs forward and backward under bf16 autocast, close to fp32;
- both recipes' objectives (demo profile) train on CUDA with bf16 autocast, fused AdamW and Muon,
  and the loss goes down; compiled objectives give eager's loss;
- the loader's float16 pinned batches become float32 on the device.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import torch

from efm import registry
from efm.assemble import assemble
from efm.config import compose
from efm.interfaces import Tokens
from efm.testing import requires_cuda
from efm.train.loop import autocast_dtype, compile_model, to_device
from efm.train.optim import Optimizers

# EFM_GPU_TESTS_ON=cpu rehearses these tests on the CPU (bf16 autocast there too), to check the
# tests themselves before a GPU run
ON = os.environ.get("EFM_GPU_TESTS_ON", "cuda")
CUDA = torch.device(ON)
pytestmark = [pytest.mark.gpu] + ([requires_cuda] if ON == "cuda" else [])

TOKENIZERS: list[tuple[str, dict[str, Any]]] = [
    ("spectrogram", {}),
    ("morlet", {"n_times": 2000}),
    ("wpli", {"n_times": 2000}),
    ("wpli", {"n_times": 2000, "flash_compat": True}),
    ("temporal_matrix", {}),
    ("bandpass", {}),
    ("stack", {"names": ["spectrogram", "temporal_matrix"], "n_times": 2000, "output_size": 64}),
    ("patch", {"patch_s": 0.2, "sfreq": 250.0}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(TOKENIZERS)]


def _signal(b: int = 3, c: int = 8, t: int = 2000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, t, generator=g) * 30.0


def _tensors(out: Any) -> dict[str, torch.Tensor]:
    if isinstance(out, Tokens):
        return {
            f.name: getattr(out, f.name)
            for f in dataclasses.fields(out)
            if torch.is_tensor(getattr(out, f.name))
        }
    return {"out": out}


def _close(a: Any, b: Any, atol: float, rtol: float) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        x, y = ta[k].detach().cpu(), tb[k].detach().cpu()
        if x.is_floating_point():
            x, y = x.float(), y.float()
        torch.testing.assert_close(
            x, y, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m, k=k: f"{k}: {m}"
        )


@pytest.mark.parametrize(("name", "cfg"), TOKENIZERS, ids=IDS)
def test_representation_on_cuda_equals_cpu(name: str, cfg: dict[str, Any]) -> None:
    rep = registry.create("tokenizers", name, **cfg)
    x = _signal()
    with torch.no_grad():
        ref = rep(x)
        out = rep.to(CUDA)(x.to(CUDA))
    _close(out, ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize(("name", "cfg"), TOKENIZERS, ids=IDS)
def test_representation_compiled_equals_eager_on_cuda(name: str, cfg: dict[str, Any]) -> None:
    torch._dynamo.reset()
    rep = registry.create("tokenizers", name, **cfg).to(CUDA)
    compiled = torch.compile(rep, fullgraph=True)
    x = _signal().to(CUDA)
    with torch.no_grad():
        _close(compiled(x), rep(x), atol=1e-4, rtol=1e-4)
        if name != "patch":  # bf16 in, bf16 out, close to the fp32 image
            xb = x.to(torch.bfloat16)
            out = compiled(xb)
            assert _tensors(out)["out"].dtype == torch.bfloat16
            ref = rep(x)
            err = (out.float() - ref).abs().mean() / (ref.abs().mean() + 1e-6)
            assert err < 0.05, f"bf16: mean relative error {err:.3f}"


@pytest.mark.parametrize("name", ["hiera_test", "moirai_test"])
def test_backbone_bf16_autocast_forward_backward(name: str) -> None:
    if name not in registry.names("backbones"):
        pytest.skip(f"{name} not registered")
    torch.manual_seed(0)
    model = registry.create("backbones", name).to(CUDA).eval()  # no dropout in the comparison
    x = model.example_input(2)
    if isinstance(x, Tokens):
        x = dataclasses.replace(
            x, **{k: v.to(CUDA) for k, v in _tensors(x).items()}
        )  # example tokens are made on the CPU
    else:
        x = x.to(CUDA)
    ref = model(x).features.float()
    with torch.autocast(CUDA.type, dtype=torch.bfloat16):
        out = model(x).features
    assert torch.isfinite(out.float()).all()
    err = (out.float() - ref).abs().mean() / (ref.abs().mean() + 1e-6)
    assert err < 0.05, f"bf16 vs fp32 features: mean relative error {err:.3f}"
    with torch.autocast(CUDA.type, dtype=torch.bfloat16):
        out = model.train()(x).features
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def _objective(recipe: str, *overrides: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    cfg = compose([f"recipe={recipe}", *overrides])
    torch.manual_seed(0)
    return assemble(cfg).to(CUDA), cfg


def _batch(cfg: dict[str, Any], b: int = 8) -> dict[str, Any]:
    p = cfg["pipeline"]
    seconds = min(list(cfg["train"].get("crops_s") or [p["epoch_s"]]))
    n_chans = 8
    signal = _signal(b, n_chans, int(p["sfreq"] * seconds), seed=1).half()
    if CUDA.type == "cuda":
        signal = signal.pin_memory()
    return to_device({"signal": signal}, CUDA)


@pytest.mark.parametrize("recipe", ["epi250k", "diver1-iEEG", "diver1-EEG"])
def test_objective_trains_on_cuda_with_bf16_fused_adamw_and_muon(recipe: str) -> None:
    obj, cfg = _objective(recipe)
    batch = _batch(cfg)
    assert batch["signal"].dtype == torch.float32 and batch["signal"].device.type == CUDA.type
    opt = Optimizers(obj, cfg["optim"] | {"warmup_steps": 0}, 100)
    amp = autocast_dtype("auto" if CUDA.type == "cuda" else "bf16", CUDA)
    assert amp == torch.bfloat16
    losses = []
    for step in range(40):
        torch.manual_seed(step % 2)  # the same two masks, so the loss can go down
        with torch.autocast(CUDA.type, dtype=amp):
            loss = obj(batch).loss
        loss.backward()
        opt.clip_and_step()
        opt.zero_grad()
        losses.append(float(loss))
    assert all(map(torch.isfinite, map(torch.tensor, losses))), losses
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses


@pytest.mark.parametrize("recipe", ["epi250k", "diver1-iEEG"])
def test_compiled_objective_gives_eager_loss_on_cuda(recipe: str) -> None:
    torch._dynamo.reset()
    import torch._inductor.config as inductor_config

    obj, cfg = _objective(recipe)
    batch = _batch(cfg)
    torch.manual_seed(3)
    eager = obj(batch).loss
    compiled = compile_model(obj, "default")
    try:
        inductor_config.fallback_random = True  # the same masks as eager
        torch.manual_seed(3)
        loss = compiled(batch).loss
        loss.backward()
    finally:
        inductor_config.fallback_random = False
    torch.testing.assert_close(loss, eager, atol=1e-3, rtol=1e-3)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.parameters())
