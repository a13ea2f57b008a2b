"""train.threads is honoured and described; the ETA helper flags a CPU run meant for GPUs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from efm.data.synthetic import write_synthetic_shards
from efm.train import loop
from efm.train.loop import configure_threads, duration, estimate, pretrain
from tests.core.train.tiny import tiny_config


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_threads_key_and_environment(monkeypatch, restore_threads):
    assert configure_threads({"threads": 1}).startswith("1 CPU thread(s) (train.threads;")
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "(OMP_NUM_THREADS;" in configure_threads({"threads": None})
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert "(PyTorch's default;" in configure_threads({})


def test_busy_machine_warns_once(monkeypatch, caplog, restore_threads):
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    monkeypatch.setattr(loop, "_BUSY_WARNED", [])
    with caplog.at_level(logging.WARNING, "efm.train.loop"):
        configure_threads({})
        configure_threads({})
    assert [r.message.count("train.threads=1") for r in caplog.records] == [1]


def test_pretrain_runs_with_the_configured_threads(tmp_path, restore_threads):
    shards = write_synthetic_shards(tmp_path / "shards")
    pretrain(tiny_config(tmp_path / "run", steps=2, threads=1, figures=False), shards)
    assert torch.get_num_threads() == 1


def test_estimate():
    assert duration(42) == "42 s" and duration(600) == "10.0 min" and duration(7200) == "2.0 h"
    assert duration(3 * 86400) == "3.0 days"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    text, absurd = estimate(2.0, 100, cpu)
    assert text.startswith("about 3.3 min left (2 s/step, 100 steps)") and not absurd
    assert estimate(2.0, 100_000, cpu)[1] and not estimate(2.0, 100_000, cuda)[1]


def test_first_lines_warn_about_the_paper_profile_on_a_cpu(tmp_path, restore_threads):
    from efm.config import compose
    from efm.run import first_lines

    full = first_lines(compose(["recipe=epi250k", "data.profile=full"]), tmp_path)
    assert full[0].startswith("compute: CPU, ") and full[1].startswith(f"results: {tmp_path}")
    assert any(x.startswith("warning: profile 'full'") and "100000 steps" in x for x in full)
    demo = first_lines(compose(["recipe=epi250k", "train.threads=1"]), tmp_path)
    assert not any(x.startswith("warning") for x in demo) and "1 CPU thread(s)" in demo[0]


def test_the_report_says_in_words_which_encoder_wins(tmp_path):
    from efm.evaluate.report import write_report
    from efm.run import compare_encoders

    def probe(kappa, std):
        return {"mean": {"kappa": kappa}, "std": {"kappa": std}}

    pre = {"seizure": probe(0.80, 0.05), "sleep": probe(0.40, 0.10), "spike": probe(0.5, 0.1)}
    base = {"seizure": probe(0.60, 0.08), "sleep": probe(0.45, 0.02), "spike": probe(0.45, 0.1)}
    pre["bad"], base["bad"] = probe(0.1, 0.05), probe(0.5, 0.05)
    pre["skipped_task"] = {"skipped": "no labels"}
    lines = compare_encoders(pre, base)
    assert len(lines) == 4
    assert lines[0] == (
        "seizure: the pretrained encoder beats its random init by more than the seed spread "
        "(kappa 0.800 vs 0.600, seed spread 0.080)."
    )
    assert lines[1].startswith("sleep: the random-init baseline wins, by less than the seed")
    assert lines[1].endswith("no evidence here that pretraining helped this probe.")
    assert lines[2].startswith("spike: the pretrained encoder is ahead of its random init by less")
    assert lines[3].startswith("bad: the random-init baseline wins by more than the seed spread")
    # identical splits: the comparison is paired, per split. The pretrained encoder is ahead on
    # every split by about 0.05 while both spreads (the splits' difficulty) are 0.15
    rng = np.random.default_rng(0)
    hard = rng.uniform(0.2, 0.7, size=8)
    ahead = 0.05 + rng.uniform(-0.01, 0.01, size=8)

    def seeds(kappas):
        k = np.asarray(kappas)
        return {
            "mean": {"kappa": float(k.mean())},
            "std": {"kappa": float(k.std())},
            "per_seed": [{"kappa": float(v), "test_patients": [f"p{i}"]} for i, v in enumerate(k)],
        }

    (line,) = compare_encoders({"seizure": seeds(hard + ahead)}, {"seizure": seeds(hard)})
    d = ahead
    assert line == (
        "seizure: the pretrained encoder beats its random init by more than the seed spread "
        f"(kappa {(hard + d).mean():.3f} vs {hard.mean():.3f}; per split {d.mean():+.3f} ± "
        f"{d.std():.3f} over 8 identical patient-level splits, pretrained ahead in 8)."
    )
    assert (hard + d).std() > d.mean()  # unpaired, the same numbers would be within the spread
    other = seeds(hard)
    other["per_seed"][0]["test_patients"] = ["q"]  # not the same splits: unpaired
    (line,) = compare_encoders({"seizure": seeds(hard + ahead)}, {"seizure": other})
    assert "is ahead of its random init by less than the seed spread" in line
    assert "seed spread" in line and "per split" not in line
    probes = {"skipped_task": {"skipped": "no labels"}}
    md, _ = write_report(tmp_path, {"recipe": "x", "probes": probes, "comparison": lines})
    assert f"- {lines[1]}" in md.read_text()
