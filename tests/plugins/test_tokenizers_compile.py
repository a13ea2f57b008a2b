"""``torch.compile(fullgraph=True)`` equals eager on small CPU cases.

Compiling is slow on a 2-core CPU, so one representation runs by default and the rest are marked
``slow`` (opt-in: ``EFM_RUN_SLOW=1``).
"""

from __future__ import annotations

import os

import pytest
import torch

from efm import registry


def _check(name: str, **cfg) -> None:
    torch._dynamo.reset()
    rep = registry.create("tokenizers", name, **cfg)
    x = torch.randn(2, 4, 1000, generator=torch.Generator().manual_seed(0)) * 30
    compiled = torch.compile(rep, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), rep(x), atol=1e-5, rtol=1e-5)
        xb = x.to(torch.bfloat16)
        out = compiled(xb)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), rep(xb).float(), atol=1e-2, rtol=1e-2)


def test_spectrogram_compiles_fullgraph():
    _check("spectrogram", output_size=64, n_freqs_out=64)


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("morlet", {"n_times": 1000, "output_size": 64}),
        ("wpli", {"n_times": 1000, "output_size": 64}),
        ("wpli", {"n_times": 1000, "output_size": 64, "flash_compat": True}),
        ("temporal_matrix", {"output_size": 64}),
        ("bandpass", {}),
        (
            "stack",
            {"names": ["spectrogram", "temporal_matrix"], "n_times": 1000, "output_size": 64},
        ),
    ],
)
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_compiles_fullgraph(name, cfg):
    _check(name, **cfg)
