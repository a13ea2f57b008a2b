"""DDP and FSDP2 on a GPU: what the CPU tests (gloo, fp32) cannot show. Skipped without CUDA.

One process, a process group of one (NCCL): the epi250k demo objective trains a few steps plain,
in DDP and sharded by FSDP2 with its bf16 ``MixedPrecisionPolicy`` (parameters gathered in bf16,
gradients reduced in fp32), under bf16 autocast as the loop runs it on CUDA. The three losses stay
close, the sharded master weights stay fp32, and the gathered weights load into a plain model.
``EFM_GPU_TESTS_ON=cpu`` rehearses it on the CPU (gloo; no mixed precision policy there).
"""

from __future__ import annotations

import os

import pytest
import torch

from efm.assemble import assemble, data_spec
from efm.config import compose
from efm.testing import requires_cuda
from efm.testing.ddp import free_port, random_batch
from efm.train import distributed
from efm.train.loop import autocast_dtype
from efm.train.optim import Optimizers

ON = os.environ.get("EFM_GPU_TESTS_ON", "cuda")
pytestmark = [pytest.mark.gpu] + ([requires_cuda] if ON == "cuda" else [])


@pytest.fixture
def group():
    backend = "nccl" if ON == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    yield distributed.Dist(0, 1, 0, torch.device(ON, 0) if ON == "cuda" else torch.device("cpu"))
    torch.distributed.destroy_process_group()


def _train(how: str, dist: distributed.Dist, steps: int = 4) -> tuple[list[float], torch.nn.Module]:
    cfg = compose(["recipe=epi250k", "pipeline.epoch_s=8"])
    torch.manual_seed(0)
    obj = assemble(cfg, data_spec(cfg, 8)).to(dist.device)
    distributed.freeze_unused(obj)
    amp = autocast_dtype("bf16", dist.device)
    if how == "fsdp":
        distributed.wrap(obj, how, dist, mixed_precision=amp)
    opt = Optimizers(obj, {**cfg["optim"], "warmup_steps": 0}, steps)
    model = obj if how in ("none", "fsdp") else distributed.wrap(obj, how, dist)
    losses = []
    for step in range(steps):
        torch.manual_seed(step)
        batch = {k: v.to(dist.device) for k, v in random_batch(8, 8, 2000, seed=step).items()}
        with torch.autocast(dist.device.type, dtype=torch.bfloat16):
            loss = model(batch).loss
        loss.backward()
        opt.clip_and_step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses, obj


def test_ddp_and_fsdp_mixed_precision_track_the_plain_model(group):
    plain, _ = _train("none", group)
    ddp, _ = _train("ddp", group)
    fsdp, sharded = _train("fsdp", group)
    assert all(torch.isfinite(torch.tensor(x)).all() for x in (plain, ddp, fsdp))
    torch.testing.assert_close(torch.tensor(ddp), torch.tensor(plain), rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(torch.tensor(fsdp), torch.tensor(plain), rtol=5e-2, atol=5e-3)
    assert {p.dtype for p in sharded.parameters()} == {torch.float32}  # fp32 master weights
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    cfg = compose(["recipe=epi250k", "pipeline.epoch_s=8"])
    fresh = assemble(cfg, data_spec(cfg, 8))
    fresh.load_state_dict({k: v.cpu() for k, v in full.items()})
