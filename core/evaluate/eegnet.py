"""EEGNet (Lawhern et al. 2018, "EEGNet: a compact convolutional neural network for EEG-based
brain-computer interfaces", J. Neural Eng. 15 056013), the baseline trained from scratch.

braindecode's implementation is used when it imports (``pip install 'efm[baselines]'``); braindecode
imports torchaudio, whose binary must match the installed torch, and where it does not (no torchaudio
build exists yet for every torch release) efm builds the same architecture from the paper's Table 2:

========================  ==========================================  =====================
block                     layer                                       output
========================  ==========================================  =====================
temporal                  Conv2d(1, F1, (1, K)), "same" padding       F1 x C x T
                          BatchNorm
spatial                   depthwise Conv2d(F1, D*F1, (C, 1)),         D*F1 x 1 x T
                          max-norm 1; BatchNorm; ELU
                          AvgPool (1, 4); Dropout                     D*F1 x 1 x T/4
separable                 depthwise Conv2d (1, 16) + pointwise 1x1    F2 x 1 x T/4
                          BatchNorm; ELU; AvgPool (1, 8); Dropout     F2 x 1 x T/32
classifier                Linear(F2 * T/32, N), max-norm 0.25         N
========================  ==========================================  =====================

``K`` is half a second of samples (64 at the paper's 128 Hz); EEGNet-8,2 (F1=8, D=2, F2=16) and
dropout 0.25 (cross-subject) are the defaults, as in the paper and braindecode.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger("efm.evaluate.eegnet")


class _MaxNormConv2d(nn.Conv2d):
    """A convolution whose every output filter has L2 norm at most ``max_norm`` (the paper's
    constraint, applied to the weights used in the forward pass)."""

    def __init__(self, *args: Any, max_norm: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.renorm(self.weight, p=2, dim=0, maxnorm=self.max_norm)
        return self._conv_forward(x, w, self.bias)


class _MaxNormLinear(nn.Linear):
    def __init__(self, *args: Any, max_norm: float = 0.25, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, torch.renorm(self.weight, p=2, dim=0, maxnorm=self.max_norm), self.bias)


class EEGNet(nn.Module):
    """EEGNet-F1,D for ``n_chans`` x ``n_times`` inputs (``[B, C, T]``) and ``n_outputs`` classes.

    Returns logits ``[B, n_outputs]``. ``n_times`` must be at least 32 samples (two poolings).
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float,
        *,
        F1: int = 8,
        D: int = 2,
        F2: int | None = None,
        kernel_s: float = 0.5,
        separable_kernel: int = 16,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if n_times < 32:
            raise ValueError(f"EEGNet needs at least 32 samples per epoch, got {n_times}")
        F2 = F2 if F2 is not None else F1 * D
        k = max(1, round(kernel_s * sfreq))
        self.n_chans, self.n_times = n_chans, n_times
        self.temporal = nn.Sequential(
            nn.Conv2d(1, F1, (1, k), padding="same", bias=False),
            nn.BatchNorm2d(F1, momentum=0.01, eps=1e-3),
        )
        self.spatial = nn.Sequential(
            _MaxNormConv2d(F1, F1 * D, (n_chans, 1), groups=F1, bias=False, max_norm=1.0),
            nn.BatchNorm2d(F1 * D, momentum=0.01, eps=1e-3),
            nn.ELU(),
            nn.AvgPool2d((1, 4)),
            nn.Dropout(dropout),
        )
        self.separable = nn.Sequential(
            nn.Conv2d(
                F1 * D, F1 * D, (1, separable_kernel), padding="same", groups=F1 * D, bias=False
            ),
            nn.Conv2d(F1 * D, F2, 1, bias=False),
            nn.BatchNorm2d(F2, momentum=0.01, eps=1e-3),
            nn.ELU(),
            nn.AvgPool2d((1, 8)),
            nn.Dropout(dropout),
        )
        self.classifier = _MaxNormLinear(F2 * (n_times // 4 // 8), n_outputs, max_norm=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.separable(self.spatial(self.temporal(x.unsqueeze(1))))
        return self.classifier(z.flatten(1))


def build(n_chans: int, n_outputs: int, n_times: int, sfreq: float) -> tuple[nn.Module, str]:
    """braindecode's EEGNet when it imports, else efm's; also the name of the one used."""
    try:
        from braindecode.models import EEGNet as BraindecodeEEGNet
    except (ImportError, OSError) as exc:  # OSError: a torchaudio binary built for another torch
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info("eegnet: efm's EEGNet-8,2 (braindecode unavailable: %s)", reason)
        return EEGNet(n_chans, n_outputs, n_times, sfreq), "efm"
    net = BraindecodeEEGNet(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq)
    return net, "braindecode"
