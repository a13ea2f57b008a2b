"""N and the analytic training FLOPs C against torch's FlopCounterMode; the validation loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from efm.assemble import assemble, data_spec
from efm.config import compose
from efm.scale import measure
from tests.core.train.tiny import TinyBackbone, TinyMasked, TinyRep


def _counted(objective: nn.Module, batch: dict, backward: bool = False) -> int:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        # the math SDPA kernel runs as matrix products that FlopCounterMode sees (it does not
        # count the CPU flash kernel)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            out = objective(batch)
            if backward:
                out.loss.backward()
    return counter.get_total_flops()


def _batch(n_chans: int, n_times: int) -> dict:
    torch.manual_seed(1)
    return {
        "signal": torch.randn(2, n_chans, n_times) * 20,
        "channel_mask": torch.ones(2, n_chans, dtype=torch.bool),
        "meta": [{}] * 2,
    }


def test_flops_of_linear_and_depthwise_conv_layers_match_flop_counter():
    objective = TinyMasked(TinyBackbone(n_chans=8, frame=10, dim=32), TinyRep(10))
    batch = _batch(8, 200)
    assert measure.forward_flops(objective, batch) == _counted(objective, batch)
    # a training step: forward + backward is close to 3 forward passes. Stated tolerance 20 %:
    # the first layer needs no input gradient (under 3x) while the counter charges this model's
    # depthwise-convolution backward more than twice its forward (over 3x; measured 0.85)
    ratio = 3 * measure.forward_flops(objective, batch) / _counted(objective, batch, True)
    assert 0.8 <= ratio < 1.2, ratio


def test_flops_of_hiera_mae_match_flop_counter():
    cfg = compose(["recipe=epi250k"])  # demo profile: hiera_test
    objective = assemble(cfg, data_spec(cfg, 8))
    batch = _batch(8, 7500)
    # Hiera-MAE: patch embedding, mask-unit attention (SDPA) and the decoder
    mine = measure.forward_flops(objective, batch)
    assert mine == pytest.approx(_counted(objective, batch), rel=1e-9)
    per_sample = measure.training_flops_per_sample(objective, batch)
    assert per_sample == pytest.approx(3 * mine / 2)
    ratio = 2 * per_sample / _counted(objective, batch, True)
    assert 1.0 <= ratio < 1.2, ratio


def test_non_embedding_params():
    bb = TinyBackbone(n_chans=8, frame=10, dim=32)
    total = sum(p.numel() for p in bb.parameters())
    embed = sum(p.numel() for p in bb.patch_embed.parameters())
    assert measure.non_embedding_params(bb) == total - embed
    table = nn.ModuleDict({"tokens": nn.Embedding(100, 8), "out": nn.Linear(8, 8)})
    assert measure.non_embedding_params(table) == 8 * 8 + 8


def test_validation_loss_is_the_mean_objective_loss(tmp_path):
    from efm.data.synthetic import write_synthetic_shards
    from efm.train.loader import iter_epochs

    shards = write_synthetic_shards(tmp_path, n_patients=2, epochs_per_patient=5)
    objective = TinyMasked(TinyBackbone(n_chans=8, frame=10, dim=16), TinyRep(10))
    a = measure.validation_loss(objective, shards, batch_size=4, seed=3)
    assert a == measure.validation_loss(objective, shards, batch_size=4, seed=3)  # same masks
    # by hand: batches of 4, 4 and 2 samples weighted by size, masks drawn from the same seed
    objective.eval()
    losses, sizes = [], []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(3)
        for batch in iter_epochs(shards, 4):
            losses.append(float(objective(batch).loss))
            sizes.append(batch["signal"].shape[0])
    assert sizes == [4, 4, 2]
    assert a == pytest.approx(sum(x * s for x, s in zip(losses, sizes)) / 10, rel=1e-6)
