"""End to end on real EEG: `efm run recipe=diver1-EEG data.root=<EEGMAT>` probes rest vs arithmetic.

EEGMAT (PhysioNet "EEG During Mental Arithmetic Tasks"): ``SubjectXX_1.edf`` rest, ``SubjectXX_2.edf``
arithmetic. The recipe labels the files by name (``data.file_labels``); the patient id is the subject,
so the probe's splits are subject-level. Kept fast: 8 subjects, the test-sized backbone, 2 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from efm.cli import main

SUBJECTS = [f"Subject{i:02d}" for i in range(8)]


@pytest.fixture
def eegmat(real_data: Path) -> Path:
    root = real_data / "eegmat"
    assert root.is_dir(), f"EEGMAT not found at {root}"  # a failure, never a skip
    return root


def test_diver1_eeg_probes_arithmetic_on_eegmat(
    eegmat: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("EFM_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    data = tmp_path / "eegmat8"  # the 8 subjects, for pretraining and the downstream task
    data.mkdir()
    for s in SUBJECTS:
        for k in (1, 2):
            (data / f"{s}_{k}.edf").symlink_to(eegmat / f"{s}_{k}.edf")
    code = main(
        [
            "run",
            "recipe=diver1-EEG",
            f"data.root={data}",
            "eval.tasks=[seizure,arithmetic,eegmat-arithmetic]",  # corpus probes + a task
            "eval.modes=[linear]",
            "eval.baselines=[bandpower-logreg]",
            "eval.folds=4",
            "backbone.name=moirai_test",  # keeps the recipe's 1 s patches (patch_len 500)
            "train.steps=2",
            "train.batch_size=4",
            "train.compile=none",
            "train.progress=false",
            "eval.seeds=2",
            f"train.run_dir={run_dir}",
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    assert "probe seizure: skipped" in out  # EEGMAT has no seizure labels: a notice, no crash
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("efm")]
    said = "\n".join([out, captured.err, *logged]).lower()
    assert said.count("seizure: skipped") + said.count("seizure skipped") == 1, said  # once
    report = json.loads((run_dir / "report.json").read_text())
    for name in ("pretrained", "random_init"):
        r = report["encoders"][name]["tasks"]["arithmetic"]
        assert r["classes"] == [0, 1] and r["n_patients"] == 8 and len(r["per_seed"]) == 2
        for k in ("kappa", "balanced_accuracy", "auroc"):
            assert np.isfinite(r["mean"][k]), (name, k)
        assert -1 <= r["mean"]["kappa"] <= 1 and 0 <= r["mean"]["balanced_accuracy"] <= 1
    arith = report["probes"]["arithmetic"]

    # subject-level: both files of a subject share its id, and each split's test epochs are
    # exactly all labelled epochs of its test subjects (no subject on both sides)
    emb = np.load(run_dir / "embeddings" / "pretrained.npz")
    pid, key = emb["patient_id"], emb["key"]
    assert sorted(set(pid)) == SUBJECTS
    for s in SUBJECTS:
        recs = {k.rsplit("_", 1)[0] for k, p in zip(key, pid) if p == s}
        assert recs == {f"{s}_1", f"{s}_2"}
    assert arith["n_epochs"] == len(pid)  # every epoch carries a label
    for split in arith["per_seed"]:
        test = set(split["test_patients"])
        assert test and test < set(SUBJECTS)
        n_test = int(np.isin(pid, sorted(test)).sum())
        assert (split["n_test"], split["n_train"]) == (n_test, len(pid) - n_test)
    # seed 0 refitted with scikit-learn, labels taken from the file names (_1 rest, _2 arithmetic)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([int(k.rsplit("_", 1)[0].endswith("_2")) for k in key])
    is_test = np.isin(pid, arith["per_seed"][0]["test_patients"])
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=0),
    ).fit(emb["x"][~is_test], y[~is_test])
    proba = clf.predict_proba(emb["x"][is_test])[:, 1]
    want = {
        "kappa": cohen_kappa_score(y[is_test], proba > 0.5),
        "balanced_accuracy": balanced_accuracy_score(y[is_test], proba > 0.5),
        "auroc": roc_auc_score(y[is_test], proba),
    }
    assert {k: arith["per_seed"][0][k] for k in want} == pytest.approx(want, abs=1e-6)
    epochs_per_class = np.asarray(arith["confusion"]).sum(axis=1)
    assert epochs_per_class[0] > 2 * epochs_per_class[1] > 0  # ~180 s rest vs 60 s arithmetic

    # the downstream task at the end of the run: its test recordings are the pretraining corpus,
    # which the leakage audit counts and the table flags
    res = json.loads((run_dir / "eval" / "eegmat-arithmetic" / "results.json").read_text())
    assert res["n_subjects"] == 8 and res["split"]["protocol"] == "kfold"
    assert res["leakage"]["test_in_pretraining"] == res["leakage"]["test_recordings"] == 16
    rows = {(r["method"], r["mode"]): r for r in res["rows"]}
    assert set(rows) == {("pretrained", "linear"), ("bandpower-logreg", "linear")}
    assert (
        rows["pretrained", "linear"]["flagged"]
        and not rows["bandpower-logreg", "linear"]["flagged"]
    )
    assert "data.root selects the full profile" in out.splitlines()[0]

    md = (run_dir / "report.md").read_text()
    assert "| arithmetic | " in md and "| arithmetic (random-init encoder, baseline) | " in md
    assert "Cohen's kappa | balanced acc. | AUROC" in md
