"""`efm scale` end to end on the demo corpus: 2 sizes x 2 data fractions x 2 epoch counts of the
smallest Hiera-MAE, a few steps each, launched through submitit, killed, then resumed."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from efm.cli import main

ARGS = [
    "recipe=epi250k",
    "data.demo_patients=4",
    "data.demo_minutes=6",  # 12 epochs of 30 s per patient: 1 held out, 3 to train on
    "sweep.sizes=[embed_dim=16, 'embed_dim=32,num_heads=2']",
    "sweep.data_fractions=[0.34,1]",
    "sweep.epochs=[1,2]",
    "train.batch_size=8",
    "optim.warmup_steps=1",
    "sweep.n_boot=20",
]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_demo_sweep_killed_and_resumed(tmp_path, monkeypatch, capsys, caplog):
    pytest.importorskip("submitit")
    monkeypatch.setenv("EFM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sweep"
    args = [*ARGS, f"sweep.out={out}"]
    # 1. a sweep on submitit's local executor, killed (with its jobs) once two runs finished
    proc = subprocess.Popen(
        [sys.executable, "-m", "efm.cli", "scale", *args, "sweep.executor=local"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while len(list(out.glob("runs/*/result.json"))) < 2:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert 2 <= len(before) < 8
    # 2. the same command again (submitit's debug executor, in this process) resumes
    caplog.set_level(logging.INFO, logger="efm.scale")
    assert main(["scale", *args, "sweep.executor=debug", "--plan", "C=1e13"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(before)} of 8 run(s) already finished: skipped" in caplog.text
    assert "8 of 8 run(s) finished" in printed and "plan: C = 1e+13 FLOPs" in printed
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert len(after) == 8 and all(after[k] == v for k, v in before.items())
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8
    assert {int(r["U"]) for r in rows} == {12, 36}  # 1 and 3 whole patients of 12 epochs
    assert {int(r["steps"]) for r in rows} <= {2, 3, 4, 9}
    n = sorted({int(r["N"]) for r in rows})
    assert len(n) == 2 and n[1] > 3 * n[0]
    fit = json.loads((out / "fit.json").read_text())
    assert {"L(C)", "L(D)", "L(N)"} <= set(fit["fits"]) and fit["plans"][0]["N"] > 0
    assert any("decade" in w for w in fit["warnings"])  # a tiny grid is flagged as narrow
    assert (out / "figures" / "isoloss.png").is_file() and (out / "report.md").is_file()


def test_cli_refuses_a_single_run_grid(tmp_path, capsys):
    code = main(
        [
            "scale",
            "recipe=epi250k",
            "sweep.sizes=[hiera_test]",
            f"sweep.out={tmp_path}",
            "sweep.executor=inline",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the sweep grid has one size") and "\n" == err[-1]
    assert "Traceback" not in err
    assert main(["scale", "recipe=epi250k", "--plan", "X=3"]) == 2
    assert "--plan 'X=3': give C=FLOPS" in capsys.readouterr().err
