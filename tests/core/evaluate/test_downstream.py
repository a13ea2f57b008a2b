"""Downstream evaluation on real recordings: labels, splits, leakage, baselines, adaptation, results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from efm.config import compose
from efm.errors import EfmError
from efm.evaluate import adapt, baselines, downstream, schema, splits, taskdata
from efm.evaluate.config import FinetuneConfig
from efm.evaluate.task import Task, get


def _link(root: Path, files: list[Path], base: Path) -> Path:
    for p in files:
        dst = root / p.relative_to(base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(p)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EFM_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cfg():
    return compose(["recipe=diver1-EEG"])  # moirai_test at 500 Hz, 1 s patches (demo profile)


@pytest.fixture(scope="module")
def eegmat(real_data: Path, cache, cfg, tmp_path_factory) -> taskdata.TaskData:
    """EEGMAT subjects 00-05 (rest vs arithmetic), 4 channels to keep the models quick."""
    base = real_data / "eegmat"
    files = [base / f"Subject{i:02d}_{k}.edf" for i in range(6) for k in (1, 2)]
    root = _link(tmp_path_factory.mktemp("eegmat"), files, base)
    d = taskdata.load(get("eegmat-arithmetic"), cfg, root)
    keep = [d.ch_names.index(n) for n in ("EEG Fz", "EEG Cz", "EEG Pz", "EEG O1")]
    d.x = np.ascontiguousarray(d.x[:, keep])
    d.ch_names = [d.ch_names[i] for i in keep]
    d.ch_types = [d.ch_types[i] for i in keep]
    d.ch_pos = None if d.ch_pos is None else [d.ch_pos[i] for i in keep]
    return d


# -- labels ----------------------------------------------------------------------------------------
def test_event_locked_labels_match_the_edf_annotations(real_data, cache, cfg, tmp_path):
    """EEGBCI S017R04: one 4 s epoch at each T0/T1/T2 onset, classes as MNE reads them."""
    import mne

    base = real_data / "eegbci"
    src = base / "S017" / "S017R04.edf"
    root = _link(tmp_path / "d", [src], base)
    raw = mne.io.read_raw_edf(src, preload=False, verbose="error")
    onsets, texts = raw.annotations.onset, raw.annotations.description
    fits = onsets + 4.0 <= raw.times[-1] + 1 / raw.info["sfreq"]
    d = taskdata.load(get("eegbci-imagery"), cfg, root, cache=False)
    np.testing.assert_allclose(d.start_s, onsets[fits], atol=1e-6)
    want = np.where(texts[fits] == "T0", 0, 1)
    np.testing.assert_array_equal(d.y, want)
    assert d.classes == ["rest", "imagery"] and d.x.shape == (fits.sum(), 64, 2000)
    assert set(d.subject) == {"S017"}  # the folder, not the run
    lr = taskdata.load(get("eegbci-left-right"), cfg, root, cache=False)
    keep = texts != "T0"
    assert lr.y.size == (fits & keep).sum()
    np.testing.assert_array_equal(lr.y, np.where(texts[fits & keep] == "T1", 0, 1))


def test_grid_labels_partial_overlap_rule():
    # events (onset, duration, class): class 1 covers [2, 7), class 0 covers [9, 10)
    y = taskdata.grid_labels([(2.0, 5.0, 1), (9.0, 1.0, 0)], 4, 3.0, 0.5, 2, background=0)
    # epoch [0,3): 1 s of class 1 (< 1.5 s) -> out; [3,6): covered -> 1; [6,9): 1 s -> out;
    # [9,12): class 0 for 1 s -> out
    np.testing.assert_array_equal(y, [-1, 1, -1, -1])
    y = taskdata.grid_labels([(2.0, 5.0, 1)], 5, 3.0, 0.3, 2, background=0)
    np.testing.assert_array_equal(y, [1, 1, 1, 0, 0])


def test_label_table_matching_no_event_lists_the_events(real_data, cfg, tmp_path):
    base = real_data / "eegbci"
    root = _link(tmp_path / "d", [base / "S018" / "S018R08.edf"], base)
    task = Task(labels="annotations", classes=["a", "b"], label_map={"X1": "a", "X2": "b"},
                epochs="events", epoch_s=4.0, name="wrong")  # fmt: skip
    with pytest.raises(EfmError, match="events found: T0, T1, T2"):
        taskdata.load(task, cfg, root, cache=False)


def test_csv_sidecar_and_subject_rules(real_data, cfg, tmp_path):
    base = real_data / "eegmat"
    root = _link(tmp_path / "d", [base / "Subject03_1.edf"], base)
    (root / "labels.csv").write_text("path,start,stop,label\nSubject03_1.edf,10,20,calm\n")
    task = Task(labels="csv", classes=["calm", "busy"], csv="labels.csv", epoch_s=5.0,
                subject=r"(?P<subject>Subject\d+)", name="sidecar")  # fmt: skip
    d = taskdata.load(task, cfg, root, cache=False)
    np.testing.assert_allclose(d.start_s, [10.0, 15.0])
    assert d.y.tolist() == [0, 0] and d.subject.tolist() == ["Subject03"] * 2
    assert taskdata.subject_of("sub-07/ses-2/eeg/sub-07_ses-2_task-x_eeg.edf", "parent") == "sub-07"
    assert taskdata.session_of("sub-07/ses-2/eeg/sub-07_ses-2_eeg.edf", "bids") == "ses-2"
    assert taskdata.subject_of("S001/S001R04.edf", "parent") == "S001"


def test_channel_picks_drop_ecg_and_reference(real_data, cfg):
    from efm import registry
    from efm.data import montage
    from efm.data.sources import identity

    rec = registry.create("readers", "mne").read(real_data / "eegmat" / "Subject00_1.edf")
    assert {"ECG ECG", "EEG A2-A1"} <= set(rec.ch_names) and rec.n_chans == 21
    t = get("eegmat-arithmetic")
    picked = taskdata.pick_channels(rec, t)
    assert picked.n_chans == 19 and not {"ECG ECG", "EEG A2-A1"} & set(picked.ch_names)
    np.testing.assert_array_equal(
        picked.data, rec.data[[rec.ch_names.index(n) for n in picked.ch_names]]
    )
    by_type = montage.pick_channels(rec, ["eeg"], ["eeg a2-a1"])  # ECG by its name's type
    assert by_type.ch_names == picked.ch_names
    assert "picks" not in identity(cfg)["pipeline"]  # unset picks leave the shards' identity
    c = compose(["recipe=diver1-EEG", "pipeline.picks=[eeg]"])
    assert identity(c)["pipeline"]["picks"] == ["eeg"]


# -- splits and leakage ----------------------------------------------------------------------------
def test_folds_are_disjoint_by_subject(eegmat):
    seen = []
    for f in splits.folds(eegmat.subject, eegmat.y, eegmat.classes, "kfold", 3, seed=1):
        tr, va, te = (set(eegmat.subject[i]) for i in (f.train, f.val, f.test))
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr and va and te
        seen += sorted(te)
    assert sorted(seen) == sorted(set(eegmat.subject))  # each subject tested once per seed
    loso = splits.folds(eegmat.subject, eegmat.y, eegmat.classes, "loso", 5, seed=0)
    assert len(loso) == 6 and all(np.unique(eegmat.subject[f.test]).size == 1 for f in loso)
    fixed = splits.folds(eegmat.subject, eegmat.y, eegmat.classes, "fixed", 5, 0, ["Subject02"])
    assert set(eegmat.subject[fixed[0].test]) == {"Subject02"}


def test_split_errors_are_one_clear_line(eegmat):
    s, y, c = eegmat.subject, eegmat.y, eegmat.classes
    with pytest.raises(EfmError, match="fewer than eval.folds=10"):
        splits.folds(s, y, c, "kfold", 10, 0)
    with pytest.raises(EfmError, match="S999, absent from the data"):
        splits.folds(s, y, c, "fixed", 5, 0, ["S999"])
    one = np.where(np.isin(s, ["Subject00", "Subject01"]), 1, 0)  # one class per subject
    with pytest.raises(EfmError, match="hold only class"):
        splits.folds(s, one, c, "fixed", 5, 0, ["Subject00", "Subject01"])


def test_leakage_audit_fires_on_planted_overlaps(eegmat):
    d = eegmat
    fs = splits.folds(d.subject, d.y, d.classes, "kfold", 3, 0)
    ok = splits.audit(fs, d.subject, d.recording, d.sha256, d.session, {d.sha256[fs[0].test[0]]})
    assert ok["shared"] == {"subjects": 0, "recordings": 0, "sessions": 0}
    assert ok["test_in_pretraining"] == 1 and ok["test_recordings"] == 12
    bad = splits.Fold("planted", fs[0].train, fs[0].val, np.r_[fs[0].test, fs[0].train[:1]])
    with pytest.raises(splits.LeakageError, match="subjects shared by train and test"):
        splits.audit([bad], d.subject, d.recording, d.sha256, d.session)
    sha = d.sha256.copy()  # the same file under two subject names
    sha[fs[0].test] = sha[fs[0].train[0]]
    with pytest.raises(splits.LeakageError, match="recordings shared by train and test"):
        splits.audit(fs[:1], d.subject, d.recording, sha, d.session)


# -- baselines and rows ----------------------------------------------------------------------------
def test_bandpower_row_equals_a_direct_scikit_learn_computation(eegmat, tmp_path, cfg):
    from scipy.signal import welch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = eegmat
    f, p = welch(d.x[:3].astype(np.float32), fs=d.sfreq, nperseg=1000, axis=-1)
    alpha = p[..., (f >= 8) & (f < 13)].sum(-1) * (f[1] - f[0])  # [3, C]
    total = sum(
        p[..., (f >= lo) & (f < hi)].sum(-1) * (f[1] - f[0]) for lo, hi in baselines.BANDS.values()
    )
    feats = baselines.bandpower_features(d.x, d.sfreq).reshape(len(d), d.x.shape[1], 2, 5)
    np.testing.assert_allclose(feats[:3, :, 0, 2], np.log10(alpha), rtol=1e-5)
    np.testing.assert_allclose(feats[:3, :, 1, 2], np.log10(alpha / total), rtol=1e-5)

    plan = downstream.Plan(modes=[], seeds=2, folds=3, baselines=["bandpower-logreg"])
    res = downstream.run_task(
        cfg, get("eegmat-arithmetic"), d, plan, None, tmp_path, say=lambda s: None
    )
    row = res["rows"][0]
    assert (row["method"], row["mode"]) == ("bandpower-logreg", "linear")
    x = baselines.bandpower_features(d.x, d.sfreq)
    for seed in range(2):
        fs = splits.folds(d.subject, d.y, d.classes, "kfold", 3, seed)
        idx = np.concatenate([f.test for f in fs])
        pred = np.concatenate([
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
            .fit(x[f.train], d.y[f.train]).predict(x[f.test]) for f in fs
        ])  # fmt: skip
        ref = skm.balanced_accuracy_score(d.y[idx], pred)
        assert row["per_seed"][seed]["balanced_accuracy"] == pytest.approx(ref, abs=1e-9)
    vals = [s["balanced_accuracy"] for s in row["per_seed"]]
    assert row["metrics"]["balanced_accuracy"]["mean"] == pytest.approx(np.mean(vals))
    assert row["metrics"]["balanced_accuracy"]["std"] == pytest.approx(np.std(vals, ddof=1))


def test_finetuning_lowers_the_validation_loss(eegmat, cfg):
    d = eegmat
    f = splits.folds(d.subject, d.y, d.classes, "kfold", 3, 0)[0]

    def fresh(draws: int) -> adapt.Classifier:
        torch.manual_seed(0)  # the head's initialisation (downstream seeds it the same way)
        model = adapt.Classifier(adapt.build_encoder(cfg, d.x, d.sfreq, None, 0), 2)
        torch.rand(draws)  # whatever ran before the fine-tuning
        return model

    fc = FinetuneConfig(
        epochs=4, batch_size=32, max_steps_per_epoch=4, lr=1e-3, head_lr=1e-2, patience=4
    )
    c = adapt.train_classifier(fresh(1), d.x, d.y, f.train, f.val, d.meta(), fc, seed=0)
    assert len(c.val_loss) >= 2
    assert min(c.val_loss) < c.val_loss_start - 0.01, (c.val_loss_start, c.val_loss)
    assert c.train_loss[-1] < c.train_loss[0]
    # the seed alone decides batches and dropout: the same curve after other draws
    c2 = adapt.train_classifier(fresh(7), d.x, d.y, f.train, f.val, d.meta(), fc, seed=0)
    assert c2.val_loss == c.val_loss and c2.train_loss == c.train_loss


def test_finetune_and_lora_train_at_their_own_learning_rates(eegmat, cfg, tmp_path, monkeypatch):
    """``eval.finetune.lr`` for the whole encoder, ``lora_lr`` for the adapters (one step each)."""
    from safetensors.torch import save_model

    d = eegmat
    save_model(adapt.build_encoder(cfg, d.x, d.sfreq, None, 0), str(tmp_path / "model.safetensors"))
    seen: list[tuple[bool, float]] = []
    real = adapt.train_classifier

    def spy(model, *a, **kw):
        fc = a[5]
        lora = any("lora_" in n for n, _ in model.named_parameters())
        seen.append(
            (lora, max(g["lr"] for g in adapt.param_groups(model, fc) if g["lr"] != fc.head_lr))
        )
        return real(model, *a, **kw)

    monkeypatch.setattr(adapt, "train_classifier", spy)
    fc = FinetuneConfig(epochs=1, batch_size=8, max_steps_per_epoch=1)
    assert (fc.lr, fc.lora_lr) == (1e-4, 3e-4)  # the defaults the ablations chose (docs/eval.md)
    plan = downstream.Plan(modes=["finetune", "lora"], seeds=1, folds=3, baselines=[])
    res = downstream.run_task(cfg, get("eegmat-arithmetic"), d, plan, tmp_path, tmp_path / "o",
                              finetune=fc, say=lambda s: None)  # fmt: skip
    assert [(r["method"], r["mode"]) for r in res["rows"]] == [
        ("pretrained", "finetune"), ("pretrained", "lora")
    ]  # fmt: skip
    assert seen == [(False, 1e-4)] * 3 + [(True, 3e-4)] * 3


def test_lora_trains_only_the_adapters(eegmat, cfg):
    pytest.importorskip("peft")
    import torch

    d = eegmat
    enc = adapt.build_encoder(cfg, d.x, d.sfreq, None, 0)
    model = adapt.Classifier(enc, 2)
    targets = adapt.add_lora(model, FinetuneConfig())
    assert any(t.endswith("q_proj") for t in targets) and any(t.endswith("fc1") for t in targets)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    f = splits.folds(d.subject, d.y, d.classes, "kfold", 3, 0)[0]
    fc = FinetuneConfig(epochs=1, batch_size=16, max_steps_per_epoch=2, lr=1e-2)
    adapt.train_classifier(model, d.x, d.y, f.train, f.val, d.meta(), fc, seed=0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)
    # Hiera (EPI-250k): adapters on qkv, attention and MLP projections; the rest frozen
    hcfg = compose(["recipe=epi250k"])
    x = np.zeros((2, 8, 7500), dtype=np.float16)
    hiera = adapt.Classifier(adapt.build_encoder(hcfg, x, 250.0, None, 0), 2)
    targets = adapt.add_lora(hiera, FinetuneConfig())
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1"} <= set(targets)
    trainable = [n for n, p in hiera.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)


def test_eegnet_without_braindecode_is_efms_own(monkeypatch):
    import builtins

    import torch

    from efm.evaluate.eegnet import EEGNet

    real = builtins.__import__

    def deny(name, *a, **kw):
        if name.startswith("braindecode"):
            raise OSError("libc10_cuda.so: cannot open shared object file")  # torchaudio mismatch
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", deny)
    net = baselines.eegnet(4, 2, 1000, 200.0)
    assert isinstance(net, EEGNet)
    assert net(torch.zeros(3, 4, 1000)).shape == (3, 2)


# -- results.json ----------------------------------------------------------------------------------
def test_finite_turns_nan_and_inf_into_null():
    obj = {
        "a": float("nan"),
        "b": [1.0, float("inf"), np.float64(2.5), np.float32("nan")],
        "c": "x",
    }
    assert schema.finite(obj) == {"a": None, "b": [1.0, None, 2.5, None], "c": "x"}
    assert schema.problems({"mean": None, "std": 0.1, "ci95": None}, schema._SUMMARY) == []
    assert schema.problems({"mean": "0.5", "std": 0.1, "ci95": None}, schema._SUMMARY) == [
        "$.mean: expected number or null, got str"
    ]


def test_results_json_validates_against_its_schema(eegmat, tmp_path, capsys, monkeypatch):
    from efm.cli import main

    src = Path(eegmat.root)
    code = main([
        "eval", "recipe=diver1-EEG", "task=eegmat-arithmetic", f"data.root={src}", "--random-init",
        "eval.modes=[linear]", "eval.seeds=1", "eval.folds=3", "eval.baselines=[random-init,bandpower-logreg]",
        f"out={tmp_path / 'ev'}",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "6 subjects (Subject00, Subject01" in out and "wins with balanced accuracy" in out

    def strict(token):
        raise AssertionError(f"results.json holds {token}, which is not JSON")

    res = json.loads((tmp_path / "ev" / "results.json").read_text(), parse_constant=strict)
    assert schema.problems(res) == []
    # one seed has no confidence interval: null, not NaN
    assert res["rows"][0]["metrics"]["kappa"]["ci95"] is None
    assert [(r["method"], r["mode"]) for r in res["rows"]] == [
        ("random-init", "linear"), ("bandpower-logreg", "linear")
    ]  # fmt: skip
    assert res["n_subjects"] == 6 and res["split"]["protocol"] == "kfold"
    assert set(res["rows"][0]["per_subject"]) == set(res["subjects"])
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "(best)" in md and "Leakage audit" in md
    broken = dict(res, rows=[{"method": "pretrained", "mode": "linear", "metrics": {}}])
    assert any("missing 'balanced_accuracy'" in p for p in schema.problems(broken))
    assert schema.problems({**res, "n_subjects": "6"}) == [
        "$.n_subjects: expected integer, got str"
    ]
    code = main(["eval", "recipe=diver1-EEG", "task=eegmat-arithmetic", f"data.root={src}",
                 "--random-init", "eval.test_subjects=[S999]"])  # fmt: skip
    assert code == 2 and "absent from the data" in capsys.readouterr().err


def test_fixed_test_folder_and_loso(real_data, cache, cfg, tmp_path):
    """eval.test_root: a separate folder is the test set; LOSO holds out each subject once."""
    from efm.evaluate.cli import evaluate_task

    base = real_data / "eegmat"
    train = _link(
        tmp_path / "a",
        [base / f"Subject{i:02d}_{k}.edf" for i in (6, 7, 8, 9) for k in (1, 2)],
        base,
    )
    test = _link(
        tmp_path / "b", [base / f"Subject{i:02d}_{k}.edf" for i in (10, 11) for k in (1, 2)], base
    )
    c = compose(["recipe=diver1-EEG", "eval.baselines=[bandpower-logreg]", "eval.modes=[]",
                 "eval.seeds=2", f"eval.test_root={test}"])  # fmt: skip
    res = evaluate_task(
        c, "eegmat-arithmetic", None, tmp_path / "ev", str(train), say=lambda s: None
    )
    assert res["split"]["protocol"] == "fixed" and res["split"]["test_subjects"] == [
        "Subject10",
        "Subject11",
    ]
    n_test = len(taskdata.load(get("eegmat-arithmetic"), c, test))
    assert res["n_subjects"] == 6 and res["rows"][0]["per_seed"][0]["n_test"] == n_test > 90
    assert set(res["rows"][0]["per_subject"]) == {"Subject10", "Subject11"}
    c = compose(["recipe=diver1-EEG", "eval.baselines=[bandpower-logreg]", "eval.modes=[]",
                 "eval.seeds=1", "eval.split=loso"])  # fmt: skip
    res = evaluate_task(
        c, "eegmat-arithmetic", None, tmp_path / "ev2", str(train), say=lambda s: None
    )
    assert res["split"]["protocol"] == "loso" and res["split"]["folds"] == 4
    assert res["rows"][0]["per_seed"][0]["n_test"] == res["n_epochs"]


def test_bids_events_tsv_labels_and_entities(real_data, cfg, tmp_path):
    src = real_data / "eegbci" / "S019" / "S019R08.edf"
    folder = tmp_path / "bids" / "sub-19" / "ses-2" / "eeg"
    folder.mkdir(parents=True)
    (folder / "sub-19_ses-2_task-mi_eeg.edf").symlink_to(src)
    (folder / "sub-19_ses-2_task-mi_events.tsv").write_text(
        "onset\tduration\ttrial_type\n10.0\t4.0\tleft\n30.5\t4.0\tright\n50.0\tn/a\tleft\n"
    )
    task = Task(labels="events.tsv", classes=["left", "right"], epochs="events", epoch_s=4.0,
                label_map={"left": "left", "right": "right"}, subject="bids", session="bids",
                glob="**/*.edf", name="bids-mi")  # fmt: skip
    d = taskdata.load(task, cfg, tmp_path / "bids", cache=False)
    np.testing.assert_allclose(d.start_s, [10.0, 30.5, 50.0])
    assert d.y.tolist() == [0, 1, 0]
    assert set(d.subject) == {"sub-19"} and set(d.session) == {"ses-2"}
    from efm import registry

    rec = registry.create("readers", "mne").read(src)
    sig, _ = taskdata.condition_recording(rec, cfg["pipeline"])  # volts at 500 Hz
    i = round(30.5 * d.sfreq)  # the epoch is the conditioned signal from the onset on
    assert d.x.shape == (3, 64, 2000)
    np.testing.assert_allclose(
        d.x[1].astype(np.float32), sig[:, i : i + 2000] * 1e6, rtol=2e-3, atol=0.05
    )


def test_three_classes_in_one_task(real_data, cache, cfg, tmp_path):
    """rest / left / right as one task: one-vs-rest AUROC and a 3 x 3 confusion matrix."""
    base = real_data / "eegbci"
    files = [
        base / s / f"{s}R{r:02d}.edf" for s in ("S020", "S021", "S022", "S023") for r in (4, 8)
    ]
    root = _link(tmp_path / "d", files, base)
    task = get("eegbci-rest-left-right")
    d = taskdata.load(task, cfg, root)
    assert d.classes == ["rest", "left", "right"] and set(np.unique(d.y)) == {0, 1, 2}
    plan = downstream.Plan(modes=[], seeds=1, folds=2, baselines=["bandpower-logreg"])
    res = downstream.run_task(cfg, task, d, plan, None, tmp_path / "o", say=lambda s: None)
    row = res["rows"][0]
    assert np.asarray(row["confusion"]).shape == (3, 3) and np.sum(row["confusion"]) == len(d)
    assert 0 <= row["metrics"]["auroc"]["mean"] <= 1 and np.isfinite(
        row["metrics"]["auprc"]["mean"]
    )
