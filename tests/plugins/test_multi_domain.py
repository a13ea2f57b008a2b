"""The DIVER-1 multi-domain objective: suite, DIVER-1's head sizes and weights, targets against NumPy /
SciPy and against the release's (real-part) target functions, masked-only loss, padded channels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy.signal import get_window

from efm.assemble import assemble
from efm.testing.suites import ObjectiveSuite
from efm_plugins.objectives.multi_domain import MultiDomain, spectral_layout


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TestMultiDomainSuite(ObjectiveSuite):
    names = ["multi_domain"]
    test_ddp_step = None  # run by tests/plugins/test_objectives.py's suite

    def nodes(self, name: str) -> dict[str, dict[str, Any]]:
        nodes = super().nodes(name)
        nodes["representation"].update(patch_s=0.2)  # 50 samples at the suite's 250 Hz
        return nodes


def _objective(patch_s: float, sfreq: float = 500.0, **cfg: Any) -> MultiDomain:
    """DIVER-1's setting: iEEG at ``sfreq`` low-passed at 200 Hz (max_hz is derived: 200)."""
    torch.manual_seed(0)
    return assemble(
        {
            "pipeline": {"path": "ieeg", "sfreq": sfreq, "h_freq": 200.0},
            "representation": {"name": "patch", "patch_s": patch_s},
            "backbone": {"name": "moirai_test", "dropout": 0.0},
            "objective": {"name": "multi_domain", **cfg},
        }
    )


def test_diver1_layout_and_weights() -> None:
    """At 500 Hz: 1 s patches -> time 500 / FFT 200 (w 0.1) / STFT 700; 0.1 s -> 50 / 200 (w 1.0)."""
    one = _objective(1.0)
    assert {k: h.out_features for k, h in one.heads.items()} == {
        "time": 500,
        "fft": 200,
        "stft": 700,
    }
    assert one.weights == {"time": 1.0, "fft": 0.1, "stft": 1.0}
    tenth = _objective(0.1)
    assert {k: h.out_features for k, h in tenth.heads.items()} == {"time": 50, "fft": 200}
    assert tenth.weights["fft"] == 1.0
    assert spectral_layout(500, 500.0, 200.0) == {
        "n_fft": 500,
        "fft_bins": 200,
        "scales": ((200, 100, 80), (50, 25, 20)),
    }


def _numpy_targets(x: np.ndarray, real_part: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reference: NumPy rfft and a framed Hann STFT (SciPy window), ``normalized`` = 1/sqrt(n)."""
    mag = (lambda z: np.abs(z.real)) if real_part else np.abs
    fft = np.log1p(mag(np.fft.rfft(x, n=500))[..., :200])
    parts = []
    for n, hop, bins in ((200, 100, 80), (50, 25, 20)):
        starts = np.arange(0, x.shape[-1] - n + 1, hop)
        frames = np.stack([x[..., s : s + n] for s in starts], axis=-2)  # [..., frames, n]
        spec = np.fft.rfft(frames * get_window("hann", n, fftbins=True), axis=-1) / np.sqrt(n)
        parts.append(np.swapaxes(mag(spec)[..., :bins], -1, -2).reshape(*x.shape[:-1], -1))
    return fft, np.log1p(np.concatenate(parts, axis=-1))


@pytest.mark.parametrize("real_part", [False, True])
def test_targets_match_numpy(real_part: bool) -> None:
    obj = _objective(1.0, real_part_targets=real_part)
    x = np.random.default_rng(0).standard_normal((3, 500)) * 0.3
    t = obj.targets(torch.from_numpy(x).float())
    fft, stft = _numpy_targets(x, real_part)
    np.testing.assert_allclose(t["fft"].numpy(), fft, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t["stft"].numpy(), stft, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t["time"].numpy(), x, rtol=1e-6, atol=1e-6)


def test_real_part_switch_matches_the_release() -> None:
    """``real_part_targets=True`` reproduces the released target functions (which drop the
    imaginary part before ``abs``); values from DIVER-Project/DIVER-1@fae4d7c
    ``models/target_representation_functions.py`` on CPU, input ``randn(2, 500, seed 7) * 0.3``."""
    x = torch.randn(2, 500, generator=torch.Generator().manual_seed(7)) * 0.3
    t = _objective(1.0, real_part_targets=True).targets(x)
    fft_ref = [0.1296, 1.030714, 2.29027, 2.186464, 1.213324, 1.560155, 0.269714, 1.302176, 1.065773,
               0.839269, 2.058796, 1.572062, 0.924636, 1.191186, 0.847118, 0.845826, 0.589639,
               1.616888]  # fmt: skip
    np.testing.assert_allclose(t["fft"][:, ::23].flatten().numpy(), fft_ref, atol=2e-6)
    assert float(t["fft"].sum()) == pytest.approx(536.34021, abs=1e-3)
    stft_ref = [0.046059, 0.175073, 0.012929, 0.143294, 0.160511, 0.144904, 0.271754, 0.023006,
                0.007448, 0.11809, 0.023762, 0.062581, 0.236921, 0.038037, 0.166367, 0.074172,
                0.046983, 0.037608, 0.106945, 0.027009, 0.087252, 0.149936, 0.020725, 0.19888]  # fmt: skip
    np.testing.assert_allclose(t["stft"][:, ::61].flatten().numpy(), stft_ref, atol=2e-6)
    assert float(t["stft"].sum()) == pytest.approx(137.58394, abs=1e-3)
    t50 = _objective(0.1, real_part_targets=True).targets(x[:, :50])
    assert float(t50["fft"].sum()) == pytest.approx(286.25311, abs=1e-3)
    true = _objective(1.0).targets(x)
    assert float(true["fft"].sum()) > float(t["fft"].sum())  # |X| >= |Re X|


def test_loss_only_on_masked_real_patches() -> None:
    """Padded channels are neither targets nor context: wild values there leave the loss unchanged;
    the masked fraction is counted over real patches only."""
    obj = _objective(0.1).eval()
    x = torch.randn(2, 4, 1000) * 30
    mask_ch = torch.tensor([[True, True, True, False], [True, True, False, False]])
    torch.manual_seed(3)
    out = obj({"signal": x, "channel_mask": mask_ch})
    assert 0.3 < out.logs["mask_frac"] < 0.7
    # same draw of the mask, different values in the padded channels: same loss
    y = x.clone()
    y[0, 3] = 1e4
    y[1, 2:] = -1e4
    torch.manual_seed(3)
    out2 = obj({"signal": y, "channel_mask": mask_ch})
    assert float(out2.loss) == pytest.approx(float(out.loss), rel=1e-5)
    assert set(out.figures) == {"original", "masked", "reconstruction", "hidden"}
    assert out.figures["original"].shape == out.figures["hidden"].shape == (4, 1000)
    hidden = out.figures["hidden"]
    assert (out.figures["masked"][hidden] == 0).all()
    assert torch.equal(out.figures["masked"][~hidden], out.figures["original"][~hidden])


def test_tiny_run_loss_goes_down_at_500hz() -> None:
    obj = _objective(1.0)
    x = torch.randn(2, 3, 2500) * 30
    opt = torch.optim.AdamW(obj.parameters(), lr=3e-3)
    losses = []
    for step in range(12):
        torch.manual_seed(step % 2)
        loss = obj({"signal": x}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_muP_interface_covers_every_parameter() -> None:
    obj = _objective(0.1)
    mults, roles = obj.lr_multipliers(), obj.param_roles()
    names = {n for n, _ in obj.named_parameters()}
    assert set(mults) == names == set(roles)
    assert roles["heads.time.weight"] == "output" and mults["heads.time.weight"] == 1.0
    assert mults["backbone.encoder.layers.0.attn.q_proj.weight"] == pytest.approx(4.0)  # 256 / 64
