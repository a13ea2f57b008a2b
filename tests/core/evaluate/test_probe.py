"""Patient-level splits (no leakage), the linear probe on synthetic embeddings, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from efm.errors import EfmError
from efm.evaluate.probe import linear_probe, probe_tasks, task_labels
from efm.evaluate.report import write_report
from efm.evaluate.splits import LeakageError, check_no_leakage, patient_split, patient_splits


def _data(n_patients=8, per=30, d=6, signal=2.0, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"P{i}" for i in range(n_patients)], per)
    y = np.tile((np.arange(per) % 3 == 0).astype(int), n_patients)
    # a per-patient offset: a probe that memorised patients would leak; this one cannot
    x = rng.normal(size=(groups.size, d)) + rng.normal(size=(n_patients, d)).repeat(per, axis=0)
    x[:, 0] += signal * y
    return x, y, groups


def test_split_is_patient_level_and_has_every_class():
    x, y, groups = _data()
    for seed in range(10):
        train, test = patient_split(groups, y, 0.3, seed)
        assert not set(groups[train]) & set(groups[test])
        assert set(groups[train]) | set(groups[test]) == set(groups)
        assert len(set(groups[test])) == 2  # round(8 * 0.3)
        assert set(y[train]) == set(y[test]) == {0, 1}
        assert np.array_equal(np.sort(np.r_[train, test]), np.arange(y.size))
    a = patient_split(groups, y, 0.3, 1)
    b = patient_split(groups, y, 0.3, 1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_seeds_give_distinct_splits_until_every_valid_one_is_taken():
    # 6 patients, 2 held out: C(6, 2) = 15 sets, all valid (F has no class 1, but any set with F
    # holds one other patient, who has both classes)
    groups = np.repeat(list("ABCDEF"), 4)
    y = np.tile([0, 0, 1, 1], 6)
    y[groups == "F"] = 0
    sets = [frozenset(groups[patient_split(groups, y, 0.3, s)[1]]) for s in range(20)]
    assert len(set(sets[:15])) == 15  # every 2-patient set once, before any repeats
    assert all(len(x) == 2 for x in sets)
    assert set(sets[15:]) <= set(sets[:15])  # then they repeat
    # all at once: the same splits, drawn in one pass
    assert [frozenset(groups[te]) for _, te in patient_splits(groups, y, 0.3, 20)] == sets
    # seed 0 is the first valid permutation of default_rng(0), as before distinct splits
    first = np.random.default_rng(0).permutation(6)[:2]
    assert sets[0] == frozenset(np.array(list("ABCDEF"))[first])


def test_leakage_is_detected():
    with pytest.raises(LeakageError, match="P3"):
        check_no_leakage(np.array(["P1", "P3", "P3"]), np.array(["P2", "P3"]))
    check_no_leakage(np.array(["P1"]), np.array(["P2"]))


def test_split_errors():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(EfmError, match="at least 2 patients"):
        patient_split(np.array(["A"] * 4), y, 0.3, 0)
    # class 1 only in patient B: it cannot be on both sides
    with pytest.raises(EfmError, match="every class on both sides"):
        patient_split(np.array(["A", "B", "C", "C"]), np.array([0, 1, 0, 0]), 0.5, 0, tries=20)


def test_probe_beats_chance_and_reports_every_metric():
    x, y, groups = _data()
    r = linear_probe(x, y, groups, seeds=3)
    assert len(r["per_seed"]) == 3 and r["classes"] == [0, 1]
    for key in ("kappa", "balanced_accuracy", "auroc", "f1_weighted", "auprc"):
        assert np.isfinite(r["mean"][key]) and key in r["std"]
    assert r["mean"]["kappa"] > 0.5 and r["mean"]["auroc"] > 0.9
    assert np.sum(r["confusion"]) == sum(s["n_test"] for s in r["per_seed"])
    # without signal the probe is at chance
    x0, y0, g0 = _data(signal=0.0, seed=1)
    r0 = linear_probe(x0, y0, g0, seeds=3)
    assert abs(r0["mean"]["kappa"]) < 0.2 and abs(r0["mean"]["auroc"] - 0.5) < 0.15


def test_probe_tasks_and_report(tmp_path):
    x, y, groups = _data()
    metas = [
        {"patient_id": g, "labels": {"seizure": int(v), "events": []}} for g, v in zip(groups, y)
    ]
    metas[0]["labels"]["seizure"] = -1  # unlabelled epochs are left out
    labels, keep = task_labels(metas, "seizure")
    assert keep[0] == 1 and labels.size == y.size - 1
    res = probe_tasks(x, metas, ["seizure", "sleep_stage"], {"seeds": 2})
    assert "skipped" in res["sleep_stage"] and res["seizure"]["n_epochs"] == y.size - 1
    md, js = write_report(tmp_path, {"recipe": "tiny", "probes": res, "header": ["hello"]})
    text = md.read_text()
    assert "| seizure |" in text and "Cohen's kappa" in text and "skipped" in text
    assert (tmp_path / "figures/confusion_seizure.png").is_file()
    assert json.loads(js.read_text())["probes"]["seizure"]["mean"]["kappa"] > 0.5
