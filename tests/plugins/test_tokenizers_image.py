"""Image-family representations against SciPy, MNE, mne-connectivity and flash-eeg 0.4.1.

flash-eeg 0.4.1 is installable from PyPI (MIT, pure torch) and is in the ``dev`` extra; the tests
that need it skip when it is missing. Tolerances are stated next to each comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from efm import registry
from efm.testing.suites import TokenizerSuite
from efm_plugins.tokenizers.config import RepresentationError

SFREQ = 250.0
BANDS = [(1, 4), (4, 8), (8, 13), (13, 30), (30, 60), (60, 100), (1, 40), (1, 100)]


class TestTokenizerSuite(TokenizerSuite):
    """The shared suite for every registered tokenizer (4 channels, 4 s at 250 Hz)."""

    names = registry.names("tokenizers")  # n_times (1000) and sfreq: derived by the suite


def _create(name, **cfg):
    return registry.create("tokenizers", name, **cfg)


def _signal(b=2, c=4, t=2500, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, t, generator=g, dtype=torch.float64) * 30.0
    x[:, 1] += 0.6 * torch.roll(x[:, 0], 3, dims=-1)  # some lagged coupling for WPLI
    return x.float()


def _flash():
    return pytest.importorskip("flash_eeg", reason="flash-eeg 0.4.1 (dev extra) not installed")


# --- spectrogram ---------------------------------------------------------------------------------
def test_spectrogram_raw_matches_scipy_stft_and_spectrogram():
    x = _signal(t=2000)
    raw = _create("spectrogram", output="raw")(x).double().numpy()  # [B, C, n_bins, frames]
    m = _create("spectrogram", output="raw")
    win = scipy.signal.get_window("hann", 1024)
    _, _, zxx = scipy.signal.stft(
        x.double().numpy(),
        window=win,
        nperseg=1024,
        noverlap=1024 - 128,
        boundary="even",
        padded=False,
    )
    ref = 10 * np.log10(np.abs(zxx * win.sum()) ** 2 + 1e-10)[:, :, m.bin_min : m.bin_max + 1]
    assert raw.shape == ref.shape
    # dB; fp32 FFT vs fp64: every bin within 0.01 dB (the weakest bins), on average within 1e-4
    np.testing.assert_allclose(raw, ref, atol=1e-2)
    assert np.abs(raw - ref).mean() < 1e-4
    # scipy.signal.spectrogram on the reflect-padded signal: one-sided 'spectrum' scaling
    xp = np.pad(x.double().numpy(), ((0, 0), (0, 0), (512, 512)), mode="reflect")
    _, _, sxx = scipy.signal.spectrogram(
        xp,
        window=win,
        nperseg=1024,
        noverlap=1024 - 128,
        detrend=False,
        scaling="spectrum",
        mode="psd",
    )
    ref2 = 10 * np.log10(sxx * win.sum() ** 2 / 2 + 1e-10)[:, :, m.bin_min : m.bin_max + 1]
    np.testing.assert_allclose(raw, ref2, atol=1e-2)


def test_spectrogram_image_matches_a_numpy_reference_at_true_bin_frequencies():
    x = _signal(t=2000)
    m = _create("spectrogram", output="raw")
    raw = m(x).double().numpy()
    bin_f = np.arange(m.bin_min, m.bin_max + 1) * SFREQ / 1024
    pos = np.linspace(0, 2, 224, dtype=np.float32).astype(float)
    target = np.where(pos < 1, 1.0 * 30.0**pos, 30.0 + (pos - 1) * 70.0)
    interp = np.apply_along_axis(lambda col: np.interp(target, bin_f, col), 2, raw)
    lo = interp.min(axis=(2, 3), keepdims=True)
    hi = interp.max(axis=(2, 3), keepdims=True)
    ref = F.interpolate(
        torch.from_numpy((interp - lo) / (hi - lo + 1e-8)).float(),
        size=(224, 224),
        mode="bilinear",
        align_corners=False,
    )
    out = _create("spectrogram")(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_spectrogram_matches_flash_eeg():
    fe = _flash()
    x = _signal(t=7500, b=1, c=3)
    ref = fe.spectrogram(x, compile=False)
    torch.testing.assert_close(_create("spectrogram", flash_compat=True)(x), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        _create("spectrogram", output="raw")(x),
        fe.spectrogram(x, output="raw", compile=False),
        atol=1e-4,
        rtol=0,
    )
    # the default maps frequencies to true bins: same image layout, not the same numbers
    assert (_create("spectrogram")(x) - ref).abs().max() > 1e-2


# --- Morlet --------------------------------------------------------------------------------------
def test_morlet_matches_flash_eeg_in_every_path():
    fe = _flash()
    x = _signal(t=2000, b=1, c=2)
    cases = [({}, {}), ({"n_cycles": 5.0}, {"n_cycles": 5})]  # banded gather / full fold
    for ours_kw, ref_kw in cases:
        m = _create("morlet", output="raw", n_times=2000, **ours_kw)
        assert m.banded == (not ours_kw)
        ref = fe.morlet(x, output="raw", compile=False, **ref_kw)
        torch.testing.assert_close(m(x), ref, atol=1e-2, rtol=0)  # dB, fp32 summation order
    odd = _signal(t=2001, b=1, c=2)  # T not a multiple of decim: full inverse FFT
    ref = fe.morlet(odd, output="raw", compile=False)
    torch.testing.assert_close(_create("morlet", output="raw")(odd), ref, atol=1e-2, rtol=0)
    img = _create("morlet", n_times=2000)(x)
    torch.testing.assert_close(img, fe.morlet(x, compile=False), atol=1e-4, rtol=0)


def test_morlet_matches_mne_tfr_array_morlet_up_to_one_constant():
    mne = pytest.importorskip("mne")
    x = _signal(t=2500, b=1, c=2).double().numpy()
    m = _create("morlet", output="raw", n_times=2500)
    ours = m(torch.from_numpy(x).float()).double().numpy()  # [1, 2, 50, 625] dB
    freqs = m.freqs.double().numpy()
    ref = mne.time_frequency.tfr_array_morlet(
        x, SFREQ, freqs, n_cycles=freqs / 2, output="power", decim=4, zero_mean=False, verbose=False
    )
    diff = (ours - 10 * np.log10(ref))[..., 125:500]  # central 3 s: MNE zero-pads, we wrap
    # Above 12 Hz (Gaussian of 2 Hz width, no negative-frequency leakage) the two differ by one
    # wavelet-normalisation constant for every frequency, time, channel: within 0.05 dB
    high = diff[:, :, freqs >= 12]
    assert np.abs(high - np.median(high)).max() < 0.05


def test_morlet_memory_is_bounded_by_chunks():
    m = _create("morlet", n_times=2000, chunk_elems=1 << 16)  # forces many chunks
    x = _signal(b=3, c=2, t=2000)
    torch.testing.assert_close(m(x), _create("morlet", n_times=2000)(x), atol=1e-6, rtol=0)


# --- WPLI ----------------------------------------------------------------------------------------
def test_wpli_flash_compat_matches_flash_eeg_and_reproduces_its_defect():
    fe = _flash()
    x = _signal(b=2, c=4, t=1000)
    ref = fe.connectivity(x, compile=False)
    ours = _create("wpli", flash_compat=True, n_times=1000)(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    y = x.clone()
    y[..., 512:] = torch.randn_like(y[..., 512:])  # change everything after the first 512 samples
    torch.testing.assert_close(_create("wpli", flash_compat=True, n_times=1000)(y), ours)
    whole = _create("wpli", n_times=1000)
    assert (whole(y) - whole(x)).abs().max() > 0.1  # the default uses the whole epoch


def test_wpli_whole_epoch_matches_scipy_dpss_numpy_and_mne_connectivity():
    mne = pytest.importorskip("mne")
    mnec = pytest.importorskip("mne_connectivity")
    x = _signal(b=1, c=4, t=2000).double().numpy()
    ours = _create("wpli", output="raw", n_times=2000)(torch.from_numpy(x).float()).numpy()[0]
    tapers = scipy.signal.windows.dpss(2000, 2.0, Kmax=3)
    spec = np.fft.rfft(x[:, :, None, :] * tapers, axis=-1)  # [1, C, K, F]
    freqs = np.fft.rfftfreq(2000, 1 / SFREQ)
    info = mne.create_info(4, SFREQ, "eeg")
    iu = np.triu_indices(4, 1)
    for band, (lo, hi) in enumerate(BANDS):
        sel = (freqs >= lo) & (freqs <= hi)
        s = spec[0][:, :, sel]  # [C, K, Fb]
        im = (s[:, None] * s[None].conj()).mean(2).imag  # [C, C, Fb]
        ref = np.abs(im.mean(-1)) / (np.abs(im).mean(-1) + 1e-10)
        np.testing.assert_allclose(ours[band][iu], ref[iu], atol=2e-5)  # fp32 vs fp64
        # mne-connectivity's WPLI estimator over the band's bins: its "times" axis carries the
        # bins of our single epoch, the tapers are weighted equally (flash-eeg), one "frequency"
        tfr = mne.time_frequency.EpochsTFRArray(
            info,
            spec[..., sel][:, :, :, None, :],
            times=np.arange(sel.sum()) / SFREQ,
            freqs=np.array([100.0]),
            method="multitaper",
            weights=np.ones((3, 1)),
        )
        con = mnec.spectral_connectivity_time(tfr, method="wpli", n_cycles=1e-3, verbose=False)
        dense = con.get_data(output="dense")[0, :, :, 0]  # lower triangle filled
        np.testing.assert_allclose(ours[band][iu], dense.T[iu], atol=2e-5)
    assert np.allclose(np.diagonal(ours, axis1=-2, axis2=-1), 0)


def test_wpli_image_packing():
    x = _signal(b=1, c=4, t=2000)
    m = _create("wpli", n_times=2000)
    raw = _create("wpli", output="raw", n_times=2000)(x)[0]
    img = m(x)[0, 0]
    assert img.shape == (224, 224)
    norm = (raw - raw.amin((-2, -1), keepdim=True)) / (
        raw.amax((-2, -1), keepdim=True) - raw.amin((-2, -1), keepdim=True) + 1e-8
    )
    tile = img[::28, ::28]  # nearest 8 x 8 -> 224: one pixel per cell
    assert torch.all(torch.diagonal(tile[:4, :4]) == 1)
    torch.testing.assert_close(tile[0, 1], norm[0, 0, 1])  # upper triangle: band 0
    torch.testing.assert_close(tile[1, 0], norm[1, 1, 0])  # lower triangle: band 1
    torch.testing.assert_close(tile[4 + 2, 4 + 0], norm[7, 2, 0])  # bottom-right, lower: band 7
    with pytest.raises(RepresentationError, match="2 channels"):
        m(torch.randn(1, 1, 2000))


# --- temporal matrix, bandpass, stack ------------------------------------------------------------
def test_temporal_matrix_and_bandpass_match_flash_eeg():
    fe = _flash()
    x = _signal(b=2, c=3, t=7500)
    torch.testing.assert_close(
        _create("temporal_matrix")(x), fe.reshape(x, compile=False), atol=0, rtol=0
    )
    torch.testing.assert_close(
        _create("bandpass", rolloff=2.0)(x), fe.bandpass(x, rolloff=2.0), atol=1e-4, rtol=0
    )
    # brick wall: flash-eeg's float32 grid puts bin 1500 at 50.000004 Hz and drops it; ours keeps
    # [1, 50] inclusive, so the two differ by exactly the 50 Hz bin's component
    ours, ref = _create("bandpass", rolloff=0.0)(x), fe.bandpass(x, rolloff=0.0)
    edge = torch.zeros(7500 // 2 + 1)
    edge[1500] = 1.0
    only_50 = torch.fft.irfft(torch.fft.rfft(x.double(), dim=-1) * edge, n=7500, dim=-1)
    assert (ours - ref).abs().max() > 1.0
    torch.testing.assert_close(ours - ref, only_50.float(), atol=1e-4, rtol=0)
    y = _signal(b=2, c=3, t=2500)  # a length where float32 is exact at both edges: equal
    torch.testing.assert_close(
        _create("bandpass", rolloff=0.0)(y), fe.bandpass(y, rolloff=0.0), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(
    ("n", "sfreq", "band", "bins"),
    [
        (7500, 250.0, (8.0, 13.0), (240, 390)),  # float32 put bin 390 at 13.000001 Hz
        (7500, 250.0, (13.0, 30.0), (390, 900)),
        (7500, 250.0, (60.0, 100.0), (1800, 3000)),
        (750, 250.0, (1.0, 13.0), (3, 39)),
        (4097, 173.61, (0.5, 40.0), (12, 943)),
    ],
)
def test_band_bins_are_inclusive_by_integer_index(n, sfreq, band, bins):
    from efm_plugins.tokenizers._common import band_bins, band_mask

    assert band_bins(*band, n, sfreq) == bins
    f = np.fft.rfftfreq(n, 1 / sfreq)  # float64 reference with a 1e-9-bin tolerance
    tol = 1e-9 * sfreq / n
    sel = np.flatnonzero((f >= band[0] - tol) & (f <= band[1] + tol))
    assert (sel[0], sel[-1]) == bins
    assert int(band_mask(*band, n, sfreq).sum()) == bins[1] - bins[0] + 1


def test_wpli_bands_are_inclusive_at_7500_samples():
    """8-13 Hz at 7500 samples / 250 Hz holds bins 240..390: 151 (150 with float32 edges)."""
    m = _create("wpli", output="raw", n_times=7500)
    counts = (m.band_mean > 0).sum(0).tolist()
    assert counts == [91, 121, 151, 511, 901, 1201, 1171, 2971]  # was [.., 150, 510, 900, ..]
    x = _signal(b=1, c=3, t=7500).double().numpy()
    ours = m(torch.from_numpy(x).float()).numpy()[0]
    tapers = scipy.signal.windows.dpss(7500, 2.0, Kmax=3)
    spec = np.fft.rfft(x[:, :, None, :] * tapers, axis=-1)[0]  # [C, K, F]
    im = (spec[:, None, :, 240:391] * spec[None, :, :, 240:391].conj()).mean(2).imag
    ref = np.abs(im.mean(-1)) / np.abs(im).mean(-1)
    iu = np.triu_indices(3, 1)
    np.testing.assert_allclose(ours[2][iu], ref[iu], atol=2e-5)


@pytest.mark.parametrize("scale", [1e-6, 1e3])
def test_wpli_is_invariant_to_amplitude_units(scale):
    """The same signal in V instead of uV (x 1e-6) or nV (x 1e3): equal WPLI. With the old
    absolute 1e-10 guard, uV -> V changed the mean from 0.103 to 0.078 (max difference 0.17)."""
    m = _create("wpli", output="raw", n_times=7500)
    x = _signal(b=2, c=6, t=7500)  # ~30 uV
    base = m(x)
    scaled = m(x * scale)
    assert (scaled - base).abs().max() < 1e-5
    torch.testing.assert_close(scaled.mean(), base.mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        _create("wpli", n_times=7500)(x * scale),
        _create("wpli", n_times=7500)(x),
        atol=1e-4,
        rtol=0,
    )


def test_wpli_zero_signals_are_finite():
    m = _create("wpli", output="raw", n_times=1000)
    assert torch.equal(m(torch.zeros(2, 4, 1000)), torch.zeros(2, 8, 4, 4))
    x = _signal(b=1, c=4, t=1000)
    x[:, 2] = 0.0  # one flat channel among live ones: its pairs are 0, the others unchanged
    out = m(x)
    assert torch.isfinite(out).all() and out[0, :, 2].abs().max() == 0
    assert torch.isfinite(_create("wpli", n_times=1000)(torch.zeros(1, 4, 1000))).all()


def test_bandpass_response():
    t = torch.arange(2500) / SFREQ
    tones = {f: torch.sin(2 * torch.pi * f * t) for f in (0.5, 1.0, 10.0, 50.0, 51.0, 80.0)}
    bp = _create("bandpass")  # 1-50 Hz, 2 Hz raised-cosine edges
    gain = {f: float(bp(s.view(1, 1, -1)).std() / s.std()) for f, s in tones.items()}
    assert abs(gain[10.0] - 1) < 1e-4 and abs(gain[1.0] - 1) < 1e-4 and abs(gain[50.0] - 1) < 1e-4
    assert abs(gain[51.0] - 0.5) < 1e-3 and abs(gain[0.5] - 0.5 * (1 - np.cos(np.pi * 0.75))) < 1e-3
    assert gain[80.0] < 1e-3  # -60 dB: float32 phase of sin(2 pi f t) leaks a little


def test_temporal_matrix_is_a_block_permuted_fold():
    x = torch.arange(100.0).view(1, 1, 100)  # 10 x 10 square
    m = _create("temporal_matrix", output_size=20, block_size=4)
    img = m(x)[0, 0]
    unperm = torch.empty_like(img)
    for i, p in enumerate(m.perm.tolist()):
        unperm[4 * p : 4 * p + 4] = img[4 * i : 4 * i + 4]
    ref = F.interpolate((x.view(1, 1, 10, 10) / 99.0), size=(20, 20), mode="nearest")[0, 0]
    torch.testing.assert_close(unperm, ref, atol=1e-6, rtol=0)
    with pytest.raises(RepresentationError, match="multiple of block_size"):
        _create("temporal_matrix", output_size=30, block_size=4)


def test_stack():
    x = _signal(b=2, c=3, t=1000)
    st = _create("stack", names=["spectrogram", "temporal_matrix"], output_size=64, n_times=1000)
    out = st(x)
    assert out.shape == (2, 2, 3, 64, 64)
    torch.testing.assert_close(out[:, 1], _create("temporal_matrix", output_size=64)(x))
    with pytest.raises(RepresentationError, match="cannot be stacked"):
        _create("stack", names=["wpli"])


@pytest.mark.parametrize("name", ["spectrogram", "morlet", "wpli", "temporal_matrix", "bandpass"])
def test_bad_input_is_one_clear_error(name):
    rep = _create(name)
    with pytest.raises(RepresentationError, match=r"\[B, C, T\]"):
        rep(torch.randn(4, 1000))
    with pytest.raises(RepresentationError, match="float"):
        rep(torch.ones(1, 2, 1000, dtype=torch.long))


@pytest.mark.parametrize(
    "name", ["spectrogram", "morlet", "wpli", "temporal_matrix", "bandpass", "stack"]
)
def test_cache_blocks_write_the_same_output_in_every_dtype(name, monkeypatch):
    """Eager CPU runs in cache-sized blocks written into the output: one sample per block gives
    the single-block result, also for fp16 / bf16 outputs (fp32 inside). Exactly, except the
    bandpass, whose batched FFTs may take other code paths for other batch sizes (fp32
    rounding, < 1e-4 of 30 uV)."""
    import efm_plugins.tokenizers._common as common
    import efm_plugins.tokenizers.temporal as temporal

    monkeypatch.setattr(temporal, "ONE_CALL_ELEMS", 0)  # the bandpass blocks small batches too

    cfg = {"n_times": 1000} if name in ("morlet", "wpli", "stack") else {}
    rep = _create(name, **cfg)
    x = _signal(b=3, c=4, t=1000)
    monkeypatch.setattr(common, "CACHE_ELEMS", 1 << 40)  # one block
    whole = {dt: rep(x.to(dt)) for dt in (torch.float32, torch.float16, torch.bfloat16)}
    monkeypatch.setattr(common, "CACHE_ELEMS", 1)  # one sample per block
    for dt, ref in whole.items():
        out = rep(x.to(dt))
        assert out.dtype == dt and out.shape == ref.shape
        if name == "bandpass":  # fp32 1e-4 uV, or one unit in the last place of fp16 / bf16
            atol, rtol = (1e-4, 0.0) if dt == torch.float32 else (1e-4, torch.finfo(dt).eps)
        else:
            atol, rtol = 0.0, 0.0
        torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)


def test_blocks_are_cache_sized_on_the_cpu_only_and_balanced(monkeypatch):
    import efm_plugins.tokenizers._common as common

    monkeypatch.setattr(common, "CACHE_ELEMS", 1000)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert common.block_rows(100, 10**6) == 20  # cache bound: 1000 x 2 threads / 100
    assert common.block_rows(100, 10**6, device=torch.device("cpu")) == 20
    assert common.block_rows(100, 10**6, device=torch.device("cuda")) == 10**4  # memory only
    seen = []

    def fn(xb, ob):
        seen.append(xb.shape[0])
        return ob.copy_(xb * 2)

    x = torch.randn(45, 2, 3)
    out = common.run_blocked(fn, x, 20, (2, 3), torch.float32)
    assert seen == [15, 15, 15]  # 3 blocks of at most 20, not 20 + 20 + 5
    torch.testing.assert_close(out, x * 2, atol=0, rtol=0)


def test_stretch_width_paths_are_the_same_numbers():
    """The CUDA path (bilinear with the height kept) equals the CPU path (1-D linear)."""
    import torch.nn.functional as F

    from efm_plugins.tokenizers._common import stretch_width

    img = torch.rand(3, 2, 17, 59, generator=torch.Generator().manual_seed(0))
    cpu = stretch_width(img, 224)
    assert cpu.shape == (3, 2, 17, 224)
    cuda_path = F.interpolate(img, size=(17, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cpu, cuda_path, atol=0, rtol=0)


def test_spectrogram_keeps_the_upper_edge_bin():
    """fmax / (sfreq / n_fft) = 100 / (200 / 7500) is 3749.9999999999995 in float64: int() kept
    bins up to 3749 and dropped the 100 Hz bin; the integer bin index keeps it."""
    m = _create("spectrogram", sfreq=200.0, n_fft=7500, hop_length=3750, fmax=100.0, output="raw")
    assert (m.bin_min, m.bin_max, m.n_bins) == (38, 3750, 3713)  # 1.0133 .. 100 Hz
    flash = _create(
        "spectrogram", sfreq=200.0, n_fft=7500, hop_length=3750, fmax=100.0, flash_compat=True
    )
    assert flash.bin_max == 3749  # flash-eeg's rounding, reproduced in flash_compat mode
