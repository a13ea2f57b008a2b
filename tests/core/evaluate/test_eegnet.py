"""efm's EEGNet against the paper's Table 2 (Lawhern et al. 2018), its constraints, and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efm.evaluate.eegnet import EEGNet


def test_parameters_follow_the_papers_table_2():
    # EEGNet-8,2 with C=64 channels, T=128 samples at 128 Hz (kernel 64), N=4 classes
    C, T, N, F1, D, F2, K = 64, 128, 4, 8, 2, 16, 64
    expected = (
        F1 * K  # temporal convolution
        + 2 * F1  # batch norm
        + C * D * F1  # depthwise spatial convolution
        + 2 * D * F1
        + 16 * D * F1  # separable: depthwise (1, 16)
        + D * F1 * F2  # and pointwise
        + 2 * F2
        + F2 * (T // 32) * N
        + N  # classifier
    )
    net = EEGNet(C, N, T, 128.0)
    assert sum(p.numel() for p in net.parameters()) == expected == 2388
    assert net(torch.zeros(5, C, T)).shape == (5, N)


def test_max_norm_constraints_hold_in_the_forward_pass():
    net = EEGNet(4, 2, 256, 128.0).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0).add_(10.0)
    spatial = net.spatial[0]
    w = torch.renorm(spatial.weight.detach(), 2, 0, spatial.max_norm)
    assert float(w.flatten(1).norm(dim=1).max()) == pytest.approx(1.0, rel=1e-5)
    out = net(torch.ones(2, 4, 256))
    assert torch.isfinite(out).all()


def test_too_short_epochs_are_refused():
    with pytest.raises(ValueError, match="at least 32 samples"):
        EEGNet(4, 2, 16, 128.0)


def test_learns_a_spatially_located_rhythm():
    # class 1 carries a 10 Hz rhythm on channel 2 at background amplitude; held-out accuracy
    rng = np.random.default_rng(0)
    n, c, t, fs = 240, 4, 256, 128.0
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, c, t))
    phase = rng.uniform(0, 2 * np.pi, n)
    x[:, 2] += y[:, None] * np.sin(2 * np.pi * 10 * np.arange(t) / fs + phase[:, None])
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    net = EEGNet(c, 2, t, fs)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(6):
        for i in range(0, 180, 30):
            loss = torch.nn.functional.cross_entropy(net(xt[i : i + 30]), yt[i : i + 30])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(xt[180:]).argmax(1) == yt[180:]).float().mean())
    assert acc > 0.85
