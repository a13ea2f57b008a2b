"""The training loop on tiny components: the loss goes down, resume is exact, the run dir is complete."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from efm.data.synthetic import write_synthetic_shards
from efm.errors import EfmError
from efm.train import checkpoint as ckpt
from efm.train.loop import autocast_dtype, compile_model, pretrain
from tests.core.train.tiny import tiny_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"))


def test_tiny_run_learns_and_writes_its_run_dir(shards, tmp_path):
    run = tmp_path / "run"
    result = pretrain(tiny_config(run, steps=60, log_every=10, ckpt_every=30), shards)
    losses = np.array(result.losses)
    assert len(losses) == 60 and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.8 * losses[:10].mean(), losses
    for rel in (
        "config.yaml",
        "provenance.json",
        "metrics.csv",
        "figures/loss.png",
        "figures/reconstruction.png",
        "checkpoints/latest",
        "checkpoints/step-0000060/model.safetensors",
        "checkpoints/step-0000060/state.pt",
    ):
        assert (run / rel).is_file(), rel
    assert yaml.safe_load((run / "config.yaml").read_text())["backbone"]["name"] == "tiny_mlp"
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["torch"] == torch.__version__ and prov["device"]["type"] == "cpu"
    assert any(p["module"] == "efm_plugins.backbones" for p in prov["plugins"])
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    assert {"loss", "grad_norm", "samples_per_s", "lr_muon", "lr_adamw", "visible"} <= set(rows[0])
    np.testing.assert_allclose(float(rows[0]["loss"]), losses[:10].mean(), rtol=1e-6)
    # the safetensors weights are the objective's, the rest loads with weights_only=True
    weights = load_file(run / "checkpoints/step-0000060/model.safetensors")
    assert "backbone.patch_embed.weight" in weights and "decoder_pred.weight" in weights
    state = torch.load(run / "checkpoints/step-0000060/state.pt", weights_only=True)
    assert state["step"] == 60 and state["data_position"] == 60
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        "step-0000030",
        "step-0000060",
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_run_resumes_exactly(shards, tmp_path, workers):
    kw = dict(
        steps=24, ckpt_every=8, log_every=4, num_workers=workers, crops_s=[4.0, 2.0], figures=False
    )
    full = pretrain(tiny_config(tmp_path / "full", **kw), shards)
    cfg = tiny_config(tmp_path / "cut", **kw)
    first = pretrain(cfg, shards, stop_at=13)  # killed after step 13; newest checkpoint: step 8
    assert first.losses == full.losses[:13]
    second = pretrain(cfg, shards)
    assert second.start_step == 8
    assert second.losses == full.losses[8:]  # bit-identical on CPU
    a = load_file(tmp_path / "full/checkpoints/step-0000024/model.safetensors")
    b = load_file(tmp_path / "cut/checkpoints/step-0000024/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    def rows(name):
        with (tmp_path / name / "metrics.csv").open() as f:
            return [(r["step"], r["loss"], r["lr_muon"]) for r in csv.DictReader(f)]

    assert rows("full") == rows("cut")  # rows written after the checkpoint were dropped on resume
    # a finished run resumes to nothing
    assert pretrain(cfg, shards).losses == []


def test_options_and_errors(shards, tmp_path):
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(EfmError, match="precision"):
        autocast_dtype("fp8", torch.device("cpu"))
    with pytest.raises(EfmError, match="compile"):
        compile_model(torch.nn.Linear(2, 2), "fastest")
    with pytest.raises(EfmError, match="manifest"):
        pretrain(tiny_config(tmp_path / "r"), tmp_path)
    # bf16 autocast on CPU runs and checkpoints the fp32 master weights
    result = pretrain(
        tiny_config(tmp_path / "bf16", steps=3, precision="bf16", ckpt_every=3), shards
    )
    assert np.isfinite(result.losses).all()
    w = load_file(tmp_path / "bf16/checkpoints/step-0000003/model.safetensors")
    assert w["backbone.patch_embed.weight"].dtype == torch.float32
    assert ckpt.latest(tmp_path / "nothing") is None


def test_rng_state_round_trip_weights_only(tmp_path):
    import random

    torch.save(ckpt.rng_state(), tmp_path / "rng.pt")
    a = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_run_dir_hash_ignores_eval_and_logging(tmp_path):
    from efm.train.rundir import config_hash

    a = tiny_config(tmp_path)
    b = tiny_config(tmp_path / "elsewhere", log_every=1, progress=True)
    b["eval"]["seeds"] = 9
    assert config_hash(a) == config_hash(b)
    c = tiny_config(tmp_path, steps=31)
    assert config_hash(a) != config_hash(c)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_matches_eager(shards, tmp_path, mode, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)  # eager's random masks
    kw = dict(steps=4, ckpt_every=4, figures=False, crops_s=[4.0, 2.0])
    eager = pretrain(tiny_config(tmp_path / "eager", **kw), shards)
    compiled = pretrain(tiny_config(tmp_path / mode, compile=mode, **kw), shards)
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-4, atol=1e-5)
