"""A sweep of tiny models on synthetic shards: grid, data views, records, resume, fits, report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from efm.config import validate
from efm.errors import ConfigError
from efm.scale import grid, launch
from efm.scale.cli import sweep
from efm.scale.fit import DegenerateGridError
from tests.core.train.tiny import tiny_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from efm.data.synthetic import write_synthetic_shards

    # six patients, one shard each (the unit of the data views)
    return write_synthetic_shards(
        tmp_path_factory.mktemp("shards"), n_patients=6, epochs_per_patient=16, epochs_per_shard=16
    )


def _cfg(tmp_path, **sweep):
    cfg = tiny_config(tmp_path / "unused", figures=False, batch_size=16, log_every=1)
    cfg["optim"]["use_muon"] = False  # AdamW alone: the fastest steps on a shared CPU
    cfg["sweep"] = {
        "sizes": ["dim=16", "dim=48"],
        "data_fractions": [0.4, 1.0],
        "epochs": [1, 2],
        "executor": "inline",
        "out": str(tmp_path / "sweep"),
        "n_boot": 0,  # intervals are tested in test_fit.py
    } | sweep
    return validate(cfg)


def test_data_views_hold_out_whole_units_and_nest(shards, tmp_path):
    cfg = _cfg(tmp_path, data_fractions=[0.4, 0.6, 1.0])
    val, views = grid.data_views(shards, tmp_path / "sweep", cfg["sweep"])
    units = {f: json.loads((v / "manifest.json").read_text())["units"] for f, v in views.items()}
    held = json.loads((val / "manifest.json").read_text())["units"]
    assert len(held) == 1 and [len(units[f]) for f in (0.4, 0.6, 1.0)] == [2, 3, 5]
    assert set(units[0.4]) < set(units[0.6]) < set(units[1.0])
    assert not set(held) & set(units[1.0])
    from efm.data.shards import read_manifest

    m = read_manifest(views[0.4])
    assert m["n_epochs"] == 32 and all(u.startswith(str(shards.resolve())) for u in m["urls"])


def test_sweep_records_resumes_and_fits(shards, tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path, data_fractions=[0.2, 0.4])
    calls = []
    real = launch.run_one

    def killed_after_three(spec):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the sweep is stopped during its fourth run
        calls.append(spec["label"])
        return real(spec)

    monkeypatch.setattr(launch, "run_one", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        sweep(cfg, shards=shards)
    assert len(calls) == 3
    monkeypatch.setattr(launch, "run_one", lambda spec: calls.append(spec["label"]) or real(spec))
    fitted = sweep(cfg, {"C": 1e11}, shards=shards)
    assert len(calls) == 8 and len(set(calls)) == 8  # the three finished runs were skipped
    out = tmp_path / "sweep"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8
    by = {r["label"]: r for r in rows}
    small, big = by["dim16-f0.2-e1"], by["dim48-f0.2-e1"]
    # 1 of 5 training patients x 16 epochs; 1 pass = 1 step of 16
    assert int(small["U"]) == 16 and int(small["steps"]) == 1 and int(small["D"]) == 16
    assert int(by["dim16-f0.4-e2"]["D"]) == 64 and float(by["dim16-f0.4-e2"]["epochs_seen"]) == 2
    assert int(big["N"]) > 5 * int(small["N"])
    for r in rows:
        assert float(r["C"]) == pytest.approx(float(r["flops_per_sample"]) * int(r["D"]))
        assert np.isfinite(float(r["val_loss"])) and float(r["wall_s"]) > 0
    # every run went through the engine: its own run directory, config and checkpoint
    run = out / "runs" / f"{small['label']}-{small['key']}"
    assert (run / "checkpoints" / "latest").is_file() and (run / "result.json").is_file()
    assert json.loads((run / "result.json").read_text())["steps"] == 1
    assert set(fitted["fits"]) == {"L(C)", "L(D)", "L(N)", "L(N,D)", "L(N,D')"}
    saved = json.loads((out / "fit.json").read_text())
    assert saved["plans"][0]["C"] == 1e11 and saved["plans"][0]["N"] > 0
    for fig in ("loss_vs", "loss_curves", "isoloss"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
    report = (out / "report.md").read_text()
    assert "L(N,D')" in report and "figures/isoloss.png" in report and "## Plans" in report
    printed = capsys.readouterr().out
    assert "8 of 8 run(s) finished" in printed and "plan: C = 1e+11 FLOPs" in printed


def test_a_run_with_probes_records_downstream_metrics(shards, tmp_path):
    cfg = _cfg(tmp_path, sizes=["dim=16"], data_fractions=[0.2], epochs=[1, 2], probe=True)
    val, views = grid.data_views(shards, tmp_path / "sweep", cfg["sweep"])
    spec = grid.expand(cfg, tmp_path / "sweep", val, views)[0]
    result = launch.run_one(spec.to_dict())
    # loss and downstream can diverge: both are recorded
    assert 0 <= result["probe_seizure_balanced_accuracy"] <= 1 and result["val_loss"] > 0
    assert launch.finished(spec) == result  # cached: a second call does nothing


def test_a_run_key_covers_the_held_out_split(shards, tmp_path):
    """A cached run is reused only when its validation loss would be scored on the same data."""

    def key(tag, **sweep):
        cfg = _cfg(tmp_path, sizes=["dim=16"], data_fractions=[1.0], epochs=[1, 2], **sweep)
        val, views = grid.data_views(shards, tmp_path / tag, cfg["sweep"])
        return grid.expand(cfg, tmp_path / tag, val, views)[0].key

    base = key("a")
    assert key("b") == base  # the same sweep in another folder: the same run
    assert key("c", val_max_epochs=3) != base
    assert key("d", val_fraction=0.4) != base


def test_degenerate_grid_is_refused(tmp_path):
    cfg = _cfg(tmp_path, sizes=["dim=16"], data_fractions=[1.0], epochs=[1])
    with pytest.raises(DegenerateGridError, match="single run"):
        grid.check_grid(cfg["sweep"])
    with pytest.raises(ConfigError) as exc:
        _cfg(tmp_path, sizes=["dim=16", "width=3"], data_fractions=[0, 1], epochs=[1, 1])
    text = "\n".join(exc.value.problems)
    assert "sweep.data_fractions=[0.0]: each must be in (0, 1]" in text
    assert "'width=3' sets width, not options of backbone 'tiny_mlp'" in text
    assert "sweep.epochs=[1.0, 1.0]: values repeat" in text
