"""Each built-in recipe's demo profile trains 3 steps as 2 gloo processes under torchrun, as a user
runs it: `torchrun --standalone --nproc_per_node=2 -m efm run recipe=NAME`."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EFM = Path(sys.executable).with_name("efm")
SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1"),
]


def torchrun(args: list[str], cache: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc efm ARGS`` from this environment."""
    env = {**os.environ, "EFM_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", str(EFM), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "efm-cache"  # the demo corpora, once per session


def test_epi250k_demo_runs_under_torchrun_with_rank0_output(cache, tmp_path):
    run = tmp_path / "run"
    p = torchrun(
        [
            "run",
            "recipe=epi250k",
            "train.steps=3",
            "train.batch_size=8",
            "train.progress=false",
            "eval.seeds=2",
            f"train.run_dir={run}",
        ],
        cache,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout.splitlines()
    # the header, the summary and the report come once, from rank 0
    assert sum(line.startswith("efm run: recipe 'epi250k'") for line in out) == 1, out
    assert sum(line.startswith("report: ") for line in out) == 1
    assert sum("global batch 8 = 2 process(es) x 1 micro-step(s) x 4" in x for x in p.stderr.splitlines()) == 1  # fmt: skip
    assert "parameters no step uses (frozen): backbone.norm.bias, backbone.norm.weight" in p.stderr
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [3]
    report = json.loads((run / "report.json").read_text())
    assert report["train"]["steps_run"] == 3 and report["probes"]["seizure"]["per_seed"]
    assert (run / "checkpoints/step-0000003/model.safetensors").is_file()


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=SLOW) for r in ("diver1-iEEG", "diver1-EEG")])  # fmt: skip
def test_diver_demos_pretrain_under_torchrun(cache, tmp_path, recipe):
    run = tmp_path / "run"
    args = ["pretrain", f"recipe={recipe}", "train.steps=3", "train.batch_size=4"]
    p = torchrun([*args, "train.progress=false", f"train.run_dir={run}"], cache)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "strategy ddp" in p.stderr and "checkpoint:" in p.stdout
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [3] and float(rows[0]["loss"]) > 0


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_a_batch_that_does_not_split_is_one_line(cache, tmp_path):
    p = torchrun(["pretrain", "recipe=epi250k", "train.batch_size=7", "train.steps=1",
                  f"train.run_dir={tmp_path}"], cache)  # fmt: skip
    assert p.returncode != 0
    errors = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert errors and "train.batch_size=7 is the global batch" in errors[0]
    assert not re.search(r'File ".*/(core|efm)/', p.stderr)  # torchrun's report, no efm frame
    assert "sleep staging" not in p.stderr  # refused before any data is prepared


def test_sigterm_to_the_torchrun_job_saves_a_checkpoint_and_the_rerun_resumes(cache, tmp_path):
    """A cluster's pre-emption: SIGTERM to torchrun, which sends SIGTERM to each rank's whole
    process group (loader workers included). Both ranks stop at one step and save it; the rerun
    starts there."""
    run = tmp_path / "run"
    args = ["pretrain", "recipe=diver1-EEG", "train.batch_size=4", "train.log_every=1",
            "train.ckpt_every=100000", "train.progress=false", f"train.run_dir={run}"]  # fmt: skip
    env = {**os.environ, "EFM_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    job = subprocess.Popen([*cmd, str(EFM), *args, "train.steps=100000"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    metrics = run / "metrics.csv"
    for _ in range(1200):  # the demo corpus is prepared on first use
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 4:
            break
        time.sleep(0.25)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert "DataLoader worker" not in err, err[-3000:]
    stopped = re.findall(r"stopped at step (\d+): checkpoint (\S+);", err)
    assert len(stopped) == 1, err[-3000:]  # from rank 0 only
    step = int(stopped[0][0])
    assert 3 <= step < 100000
    assert Path(stopped[0][1]) == run / f"checkpoints/step-{step:07d}"
    assert (run / f"checkpoints/step-{step:07d}/model.safetensors").is_file()
    p = torchrun([*args, f"train.steps={step + 2}"], cache)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"from step {step} " in p.stderr
    steps = [int(r["step"]) for r in csv.DictReader(metrics.open())]
    assert steps == list(range(1, step + 3))  # nothing repeated, nothing lost
