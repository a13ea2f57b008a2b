"""The representation benchmark's harness runs end to end (a small CPU case) and writes the
fields its JSON promises: timings, GB/s, the bound from the measured copy bandwidth, peak memory
and the side-by-side speedups."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_representations", ROOT / "benchmarks" / "representations.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_representations_benchmark_writes_side_by_side_rows(tmp_path):
    pytest.importorskip("mne")
    bench = _bench()
    out = tmp_path / "r.json"
    assert bench.main(
        ["--batches", "4", "--repeats", "1", "--no-flash", "--transforms", "bandpass",
         "--out", str(out)]
    ) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["runs"][0]["copy_bandwidth_GB_per_s"] > 0
    rows = {(r["impl"], r["mode"]): r for r in doc["results"]}
    assert set(rows) == {("efm", "eager"), ("scipy", "eager"), ("mne", "eager")}
    efm = rows[("efm", "eager")]
    assert efm["batch"] == 4 and efm["epochs_timed"] == 4 and efm["threads"] == 1
    assert efm["ms_per_epoch"] > 0 and efm["GB_per_s"] > 0
    # input 8 x 7500 fp32 in and out: 0.48 MB per epoch over the measured bandwidth
    bound = 1e3 * 2 * 4 * 8 * 7500 / 1e9 / doc["runs"][0]["copy_bandwidth_GB_per_s"]
    assert math.isclose(efm["bound_ms_per_epoch"], bound, rel_tol=1e-9)
    assert math.isclose(efm["x_of_bound"], efm["ms_per_epoch"] / bound, rel_tol=1e-9)
    assert efm["peak_rss_gb"] > efm["call_gb"] > 0  # measured in a fresh process
    scipy_row = rows[("scipy", "eager")]
    assert math.isclose(
        scipy_row["speedup_of_efm"], scipy_row["seconds"] / efm["seconds"], rel_tol=1e-9
    )


@pytest.mark.slow
def test_demos_benchmark_records_phases_load_and_verdicts(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_demos", ROOT / "benchmarks" / "demos.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "d.json"
    over = ["train.steps=2", "train.log_every=1", "train.ckpt_every=2", "eval.seeds=2"]
    args = ["--recipes", "epi250k", "--out", str(out)] + [f"--override={o}" for o in over]
    assert bench.main(args) == 0
    row = json.loads(out.read_text())["demos"][0]
    assert row["returncode"] == 0 and row["load_avg_1min_before"] >= 0
    assert set(row["phases_s"]) == {"prepare_s", "pretrain_s", "probe_s"}
    assert sum(row["phases_s"].values()) <= row["wall_s"]
    assert set(row["probes"]["seizure"]) == {"pretrained", "random_init"}
    assert len(row["verdicts"]) == 1 and row["verdicts"][0].startswith("seizure: ")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_downstream_benchmark_runs_at_a_tiny_size(tmp_path, monkeypatch, real_data):
    spec = importlib.util.spec_from_file_location(
        "bench_downstream", ROOT / "benchmarks" / "downstream.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("EFM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "d.json"
    assert mod.main([
        "--recipes", "diver1-EEG", "--tasks", "eegmat-arithmetic", "--steps", "2", "--folds", "2",
        "--seeds", "1", "--subjects", "3", "--modes", "linear", "--baselines", "bandpower-logreg",
        "--pretrain-root", str(real_data / "eegmat"), "--out", str(out),
    ]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    run = doc["runs"][0]
    assert run["steps"] == 2 and run["pretrain_s"] > 0
    rows = run["tasks"]["eegmat-arithmetic"]["rows"]
    assert {(r["method"], r["mode"]) for r in rows} == {
        ("pretrained", "linear"),
        ("bandpower-logreg", "linear"),
    }
