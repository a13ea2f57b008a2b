"""The DIVER-1 token family: patches, metadata, packing, and the multi-domain spectral targets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from efm import registry
from efm.interfaces import CH_TYPES, Tokens
from efm.testing.suites import TokenizerSuite
from efm_plugins.tokenizers.config import RepresentationError
from efm_plugins.tokenizers.packing import first_fit_decreasing, pack, pad_channels, unpack
from efm_plugins.tokenizers.patch import token_ids
from efm_plugins.tokenizers.targets import (
    fft_amplitude,
    stft_amplitude,
    stft_amplitude_size,
    stft_frames,
)


class TestPatchSuite(TokenizerSuite):
    names = ["patch"]


def _tok(**cfg):
    return registry.create("tokenizers", "patch", **cfg)


def test_patches_are_the_signal_cut_in_order():
    x = torch.randn(2, 3, 1000)
    tok = _tok(patch_s=0.1)(x)
    assert isinstance(tok, Tokens) and tok.shape == (2, 3, 20, 50)
    torch.testing.assert_close(tok.patches[1, 2, 7], x[1, 2, 350:400], rtol=0, atol=0)
    assert tok.sfreq == 500.0
    var, time = token_ids(tok)
    assert var[0, 2, 5] == 2 and time[0, 2, 5] == 5


def test_tail_modes():
    x = torch.randn(1, 2, 1230)
    assert _tok()(x).shape == (1, 2, 2, 500)  # DIVER-1 drops the tail
    padded = _tok(tail="pad")(x)
    assert padded.shape == (1, 2, 3, 500)
    assert torch.all(padded.patches[0, :, 2, 230:] == 0)
    with pytest.raises(RepresentationError, match="multiple of the patch"):
        _tok(tail="error")(x)
    with pytest.raises(RepresentationError, match="tail"):
        _tok(tail="wrap")
    with pytest.raises(RepresentationError, match="whole number"):
        _tok(patch_s=0.0011)


def test_bad_input_is_a_clear_error():
    with pytest.raises(RepresentationError, match=r"\[B, C, T\]"):
        _tok()(torch.randn(3, 1000))
    with pytest.raises(RepresentationError, match="at least 500"):
        _tok()(torch.randn(1, 2, 100))
    with pytest.raises(RepresentationError, match="unknown channel type 'xyz'"):
        _tok()(torch.randn(1, 2, 500), ch_types=["eeg", "xyz"])
    with pytest.raises(RepresentationError, match="3 channel types for 2 channels"):
        _tok()(torch.randn(1, 2, 500), ch_types=["eeg", "eeg", "eeg"])


def test_metadata_from_keywords_and_shard_meta():
    x = torch.randn(2, 3, 1000)
    meta = [
        {
            "ch_types": ["seeg", "seeg", "ecog"],
            "ch_pos": [[0.01, 0.02, 0.03]] * 3,
            "modality": "ieeg",
        },
        {"ch_types": ["eeg", "eeg"], "ch_pos": None, "modality": "eeg", "subtype": ["depth", 1]},
    ]
    meta[0]["subtype"] = ["depth", "depth", "grid"]
    tok = _tok()(x, meta=meta)
    assert tok.ch_type.tolist() == [
        [CH_TYPES.index("seeg")] * 2 + [CH_TYPES.index("ecog")],
        [0, 0, 0],
    ]
    assert tok.channel_mask.tolist() == [[True, True, True], [True, True, False]]
    assert tok.modality.tolist() == [1, 0]
    assert tok.subtype.tolist() == [[3, 3, 1], [3, 1, 0]]
    assert torch.allclose(tok.ch_pos[0, 1], torch.tensor([0.01, 0.02, 0.03]))
    assert torch.isnan(tok.ch_pos[1]).all()
    # keywords win over meta; tensors are accepted as they are
    mask = torch.tensor([[True, False, True], [True, True, True]])
    tok2 = _tok()(x, meta=meta, channel_mask=mask, modality="eeg", ch_pos=torch.zeros(3, 3))
    assert tok2.channel_mask.tolist() == mask.tolist() and tok2.modality.tolist() == [0, 0]
    assert torch.all(tok2.ch_pos == 0)
    # defaults: eeg, NaN positions, every channel real
    tok3 = _tok()(x)
    assert tok3.channel_mask.all() and (tok3.ch_type == 0).all() and torch.isnan(tok3.ch_pos).all()


def test_pack_rows_ids_and_round_trip():
    sig = [torch.randn(c, 1000) for c in (5, 3, 4, 1)]
    x, mask = pad_channels(sig)
    assert x.shape == (4, 5, 1000) and mask.sum(1).tolist() == [5, 3, 4, 1]
    tok = _tok(patch_s=0.1)(x, channel_mask=mask)  # 20 patches per channel
    packed = pack(tok, max_length=128)
    # first-fit-decreasing on 100, 60, 80, 20 tokens: [100 | 20], [80], [60]
    assert packed.patches.shape == (3, 128, 50)
    assert packed.token_mask.sum().item() == 20 * 13
    assert packed.sample_id[0, :100].eq(1).all() and packed.sample_id[0, 100:120].eq(2).all()
    assert packed.sample_id[0, 120:].eq(0).all()
    assert packed.source[0, 0] == 0 and packed.source[0, 100] == 3
    # sample 2 (4 channels) sits alone in row 1: variate ids 0..3, time ids 0..19
    assert packed.variate_id[1, :80].tolist() == [v for v in range(4) for _ in range(20)]
    assert packed.time_id[1, :80].tolist() == list(range(20)) * 4
    torch.testing.assert_close(packed.patches[1, 25], x[2, 1, 250:300], rtol=0, atol=0)
    back = unpack(packed.patches, packed)
    real = mask[:, :, None, None]
    torch.testing.assert_close(back * real, tok.patches * real, rtol=0, atol=0)
    attn = packed.attention_mask()
    assert attn[0, 0, 99] and not attn[0, 0, 100] and attn[0, 125, 127]


def test_pack_skips_masked_channels_in_the_middle_and_rejects_overlong_samples():
    x = torch.randn(1, 3, 500)
    tok = _tok(patch_s=0.1)(x, channel_mask=torch.tensor([[True, False, True]]))
    packed = pack(tok, max_length=32)
    assert packed.variate_id[0, :20].tolist() == [0] * 10 + [1] * 10
    torch.testing.assert_close(packed.patches[0, 10], x[0, 2, :50], rtol=0, atol=0)
    with pytest.raises(RepresentationError, match="max_length=16"):
        pack(tok, max_length=16)
    assert first_fit_decreasing([3, 3, 2, 2], 5) == ([0, 1, 0, 1], [0, 0, 3, 3])


def test_fft_amplitude_matches_numpy():
    patches = torch.randn(2, 3, 4, 50)
    ref = np.log1p(np.abs(np.fft.rfft(patches.numpy().astype(np.float64), n=500)))[..., :200]
    out = fft_amplitude(patches)
    assert out.shape == (2, 3, 4, 200) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    legacy = fft_amplitude(patches, legacy_real_part=True)
    ref_re = np.log1p(np.abs(np.fft.rfft(patches.numpy().astype(np.float64), n=500).real))[
        ..., :200
    ]
    np.testing.assert_allclose(legacy.numpy(), ref_re, rtol=1e-5, atol=1e-5)
    with pytest.raises(RepresentationError):
        fft_amplitude(torch.randn(2, 600))


def test_stft_amplitude_matches_torch_stft_and_scipy():
    patches = torch.randn(2, 3, 500, dtype=torch.float64).float()
    for n_fft, hop in ((200, 100), (50, 25)):
        ours = stft_frames(patches, n_fft, hop)
        ref = torch.stft(
            patches.reshape(-1, 500),
            n_fft,
            hop,
            window=torch.hann_window(n_fft),
            center=False,
            normalized=True,
            return_complex=True,
        )
        torch.testing.assert_close(ours.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
        win = scipy.signal.get_window("hann", n_fft)  # periodic, as torch.hann_window
        _, _, zxx = scipy.signal.stft(
            patches.numpy().astype(np.float64),
            window=win,
            nperseg=n_fft,
            noverlap=n_fft - hop,
            boundary=None,
            padded=False,
        )
        np.testing.assert_allclose(
            ours.numpy(), zxx * win.sum() / np.sqrt(n_fft), rtol=1e-4, atol=1e-5
        )
    out = stft_amplitude(patches)
    assert out.shape == (2, 3, 700) == (2, 3, stft_amplitude_size(500))
    first = torch.log1p(stft_frames(patches, 200, 100)[..., :80, :].abs()).flatten(-2)
    torch.testing.assert_close(out[..., :320], first)
    assert not torch.allclose(stft_amplitude(patches, legacy_real_part=True), out)
    with pytest.raises(RepresentationError, match="does not fit"):
        stft_amplitude(torch.randn(2, 50))


def test_targets_accept_half_precision():
    patches = torch.randn(2, 2, 500)
    for dtype in (torch.bfloat16, torch.float16):
        out = stft_amplitude(patches.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, stft_amplitude(patches.to(dtype).float()))
