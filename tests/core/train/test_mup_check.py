"""``efm mup-check``: the coordinate check is flat across widths under muP and grows under SP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from efm.errors import UsageError
from efm.train import mup_check


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_coordinate_check_flat_under_mup_growing_under_sp(tmp_path: Path) -> None:
    out = tmp_path / "coord.png"
    argv = ["--widths", "64,128,256", "--steps", "3", "--lr", "1e-2", "--out", str(out)]
    assert mup_check.cli(argv) == 0
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    mup, sp = json.loads(out.with_suffix(".json").read_text())
    assert mup["mup"] and not sp["mup"]
    layers = [k for k in mup["l1"] if k.startswith("encoder.layers.")]
    assert len(layers) == 2
    g_mup, g_sp = mup_check.growth(mup), mup_check.growth(sp)
    for name in layers:  # 4x wider: muP stays within a factor ~2, SP grows
        assert 0.4 < g_mup[name] < 2.5, (name, g_mup)
    assert g_sp[layers[-1]] > 3.0, g_sp
    assert g_sp[layers[-1]] > 2.0 * g_mup[layers[-1]]
    # step 1 is the initialisation, the same under both (all but the read-out)
    for name in layers:
        assert mup["l1"][name][0] == pytest.approx(sp["l1"][name][0], rel=0.05)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        mup_check.cli(["--widths", "64"])
    with pytest.raises(UsageError):
        mup_check.cli(["--widths", "a,b"])
