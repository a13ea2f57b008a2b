"""End to end: `efm run recipe=epi250k` on the demo corpus with a few steps, then `efm probe`."""

from __future__ import annotations

import csv
import json

import pytest

from efm import registry
from efm.cli import main


def _available(kind: str, name: str) -> bool:
    try:
        registry.get(kind, name)
    except Exception:
        return False
    return True


@pytest.fixture
def demo_env(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "efm-cache"  # one demo corpus for the session
    monkeypatch.setenv("EFM_CACHE", str(cache))
    return cache


def test_epi250k_demo_end_to_end(demo_env, tmp_path, capsys):
    for kind, name in (
        ("tokenizers", "spectrogram"),
        ("backbones", "hiera_test"),
        ("objectives", "mae"),
    ):
        assert _available(kind, name), f"{kind} {name} is not registered"
    run_dir = tmp_path / "run"
    code = main(
        [
            "run",
            "recipe=epi250k",
            "train.steps=4",
            "train.log_every=2",
            "train.ckpt_every=2",
            "train.batch_size=8",
            "train.progress=false",
            "eval.seeds=2",
            f"train.run_dir={run_dir}",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "embedded demo corpus" in out[0] and "profile 'demo'" in out[0]
    assert "hiera_test" in out[1]
    report = json.loads((run_dir / "report.json").read_text())
    seizure = report["probes"]["seizure"]
    assert seizure["n_patients"] == 12 and len(seizure["per_seed"]) == 2
    assert seizure["per_seed"][0]["test_patients"] != seizure["per_seed"][1]["test_patients"]
    # every split was patient-level
    for s in seizure["per_seed"]:
        assert s["n_test"] > 0 and s["test_patients"]
    assert seizure["mean"]["kappa"] > 0.2 and seizure["mean"]["auroc"] > 0.7  # well above chance
    assert report["train"]["steps_run"] == 4
    # the first lines say what runs, on what, where results go; console and report share the loss
    assert out[2].startswith("compute: CPU,") and "thread" in out[2]
    assert out[3].startswith(f"results: {run_dir}")
    train = report["train"]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert (train["first_step"], train["last_step"]) == (2, 4)
    assert (train["first_loss"], train["last_loss"]) == (
        float(rows[0]["loss"]),
        float(rows[-1]["loss"]),
    )
    line = next(x for x in out if x.startswith("pretrained steps 0..4"))
    assert f"loss {train['first_loss']:.4g} (step 2) -> {train['last_loss']:.4g} (step 4)" in line
    for rel in (
        "report.md",
        "config.yaml",
        "provenance.json",
        "metrics.csv",
        "figures/loss.png",
        "figures/reconstruction.png",
        "figures/confusion_seizure.png",
        "checkpoints/step-0000004/model.safetensors",
        "embeddings/pretrained.npz",
    ):
        assert (run_dir / rel).is_file(), rel
    assert "random_init" in report["encoders"]

    # `efm probe` reads the run directory back (config + newest checkpoint)
    assert main(["probe", f"run_dir={run_dir}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("probe seizure: kappa")
    # pointed at other data (here: other pipeline options) it writes a new folder, not the run's
    assert main(["probe", f"run_dir={run_dir}", "pipeline.min_epochs=2"]) == 0
    assert "probing other data than the run's" in capsys.readouterr().out
    (other,) = (run_dir / "probe").iterdir()
    assert (other / "report.md").is_file() and (other / "embeddings" / "pretrained.npz").is_file()


def test_run_errors(demo_env, tmp_path, capsys):
    assert main(["probe", f"run_dir={tmp_path}"]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert main(["pretrain"]) == 2
