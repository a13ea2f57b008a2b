"""Ctrl-C and SIGTERM save a checkpoint of the step the loop is on; the same command resumes there."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from efm.data.synthetic import write_synthetic_shards
from efm.train import checkpoint as ckpt
from efm.train.loop import pretrain
from tests.core.train.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import sys
from efm.train.loop import Interrupted, pretrain
from tests.core.train.tiny import tiny_config
cfg = tiny_config(sys.argv[1], **{kw})
try:
    pretrain(cfg, sys.argv[2])
except Interrupted as exc:
    sys.exit(128 + exc.signum)
"""


def _logged_step(run: Path) -> int:
    try:
        with (run / "metrics.csv").open() as f:
            rows = list(csv.DictReader(f))
    except (FileNotFoundError, csv.Error):
        return 0
    return int(rows[-1]["step"]) if rows else 0


@pytest.mark.parametrize("signum,workers", [(signal.SIGINT, 2), (signal.SIGTERM, 0)])
def test_signal_saves_the_current_step_and_resume_starts_there(tmp_path, signum, workers):
    shards = write_synthetic_shards(tmp_path / "shards")
    run = tmp_path / "run"
    kw = dict(steps=100000, ckpt_every=1000, log_every=5, num_workers=workers, figures=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(kw=kw), str(run), str(shards)],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole group: loader workers too
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _logged_step(run) < 20:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run never reached step 20"
            time.sleep(0.2)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "the same command resumes" in err
    saved = ckpt.latest(run)
    assert saved is not None
    step = torch.load(saved / "state.pt", weights_only=True)["step"]
    assert 20 <= step < 1000  # the interrupted step, not a periodic checkpoint (there was none)
    # resuming starts from the interrupted step and continues its metrics
    result = pretrain(tiny_config(run, **kw), shards, stop_at=step + 5)
    assert result.start_step == step and len(result.losses) == 5
    assert _logged_step(run) == step + 5 - (step + 5) % 5
