"""Stage 7: sleep staging on the 10-20 channels, before regional averaging (a pluggable stage).

``pipeline.sleep_staging``:

``auto``
    YASA (Vallat & Walker 2021, eLife 10:e70092; https://github.com/raphaelvallat/yasa) when the
    ``sleep`` extra is installed (``pip install efm[sleep]``); otherwise the stage is skipped with one
    logged notice.
``yasa``
    YASA, and an error when it is not installed.
``gssc``
    GSSC (Heib et al. 2025; https://github.com/jshanna100/gssc), **opt-in only**: it is AGPL-3.0 and
    its weights are pickled whole ``nn.Module`` objects, which are unpickled here with
    ``weights_only=False``; choose it only if you trust the installed ``gssc`` package. Install it
    yourself (``pip install gssc``); efm never installs it.
``none``
    No staging.

Stages are integers per 30 s epoch: 0 W, 1 N1, 2 N2, 3 N3, 4 REM (-1 unknown). Annotated stages
(the taxonomy's sleep subcategories) take precedence over predicted ones in the pipeline.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from efm.errors import ConfigError, EfmError

log = logging.getLogger("efm.data.sleep")

STAGES = {"W": 0, "WAKE": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, "REM": 4}  # YASA 0.6 and 0.8 labels
MODES = ("auto", "yasa", "gssc", "none")
_NOTICED: set[str] = set()


def _notice(msg: str) -> None:
    if msg not in _NOTICED:
        _NOTICED.add(msg)
        log.info(msg)


def available(mode: str, notice: bool = True) -> str | None:
    """The stager that ``mode`` resolves to here, or None when staging is skipped.

    ``notice``: say once per process that ``auto`` skips staging because YASA is missing.
    """
    if mode not in MODES:
        raise ConfigError([f"pipeline.sleep_staging={mode!r}; options: {', '.join(MODES)}"])
    if mode == "none":
        return None
    if mode in ("auto", "yasa"):
        if importlib.util.find_spec("yasa") is not None:
            return "yasa"
        if mode == "yasa":
            raise EfmError("sleep staging 'yasa' needs the sleep extra: pip install 'efm[sleep]'")
        if notice:
            _notice("sleep staging skipped: YASA is not installed (pip install 'efm[sleep]')")
        return None
    if importlib.util.find_spec("gssc") is None:
        raise EfmError(
            "sleep staging 'gssc' was chosen but gssc is not installed (pip install gssc; "
            "AGPL-3.0, pickled weights)"
        )
    return "gssc"


def _pick(ch_names: list[str], prefs: tuple[str, ...]) -> str | None:
    return next((c for c in prefs if c in ch_names), None)


def stage(
    data: np.ndarray,
    sfreq: float,
    ch_names: list[str],
    n_epochs: int,
    epoch_s: float,
    mode: str = "auto",
) -> np.ndarray | None:
    """Predicted stages ``[n_epochs]`` (-1 unknown), or None when the stage is skipped.

    Parameters
    ----------
    data : ndarray, shape (n_chans, n_times)
        The 10-20 channels in volts (conditioned), named by ``ch_names``.
    """
    which = available(mode)
    if which is None:
        return None
    if abs(epoch_s - 30.0) > 1e-9:
        _notice(f"sleep staging skipped: it needs 30 s epochs, got {epoch_s} s")
        return None
    if n_epochs * 30.0 < 300.0:
        _notice("sleep staging skipped for recordings shorter than 5 minutes")
        return None
    import mne

    eeg = _pick(ch_names, ("C4", "C3", "Cz", "F4", "F3"))
    if eeg is None:
        _notice("sleep staging skipped: none of C4, C3, Cz, F4, F3 present")
        return None
    info = mne.create_info(list(ch_names), sfreq, "eeg")
    raw = mne.io.RawArray(
        data[:, : int(n_epochs * epoch_s * sfreq)].astype(np.float64), info, verbose="error"
    )
    out = np.full(n_epochs, -1)
    if which == "yasa":
        import yasa

        hyp = yasa.SleepStaging(raw, eeg_name=eeg).predict()
        labels = np.asarray(getattr(hyp, "hypno", hyp)).astype(str)
        codes = np.array([STAGES.get(s, -1) for s in labels])
        m = min(n_epochs, len(codes))
        out[:m] = codes[:m]
        return out
    return _gssc(raw, [c for c in ("C3", "C4", "F3", "F4") if c in ch_names], out)


def _gssc(raw: Any, eeg: list[str], out: np.ndarray) -> np.ndarray:  # pragma: no cover - opt-in
    """GSSC inference; its pickled modules are loaded with ``weights_only=False`` (trusted opt-in)."""
    import importlib.resources as res

    import torch
    from gssc.infer import EEGInfer

    nets = res.files("gssc").joinpath("nets")
    net = torch.load(str(nets / "sig_net_v1.pt"), weights_only=False, map_location="cpu")
    con = torch.load(str(nets / "gru_net_v1.pt"), weights_only=False, map_location="cpu")
    stages, _times = EEGInfer(net=net, con_net=con, use_cuda=False).mne_infer(raw, eeg=eeg, eog=[])
    m = min(len(out), len(stages))
    out[:m] = np.asarray(stages)[:m]
    return out
