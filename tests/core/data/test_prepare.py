"""``efm prepare`` end to end: shard contract, bad input, partitions, resume after kills."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from efm.data import ensure_shards, prepare
from efm.data.shards import META_KEYS, group_id
from efm.data.sources import config_hash
from tests.conftest import ROOT

FAST = ["pipeline.sleep_staging=none", "--no-progress"]


def run_cli(*args: str) -> int:
    return prepare.cli(["recipe=epi250k", *FAST, *args])


def shard_contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def samples(out: Path) -> list[tuple[str, np.ndarray, dict]]:
    got = []
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        with tarfile.open(out / shard["path"]) as tar:
            members = tar.getmembers()
            for m_sig, m_meta in zip(members[1::2], members[0::2]):
                sig = np.load(io.BytesIO(tar.extractfile(m_sig).read()))
                meta = json.loads(tar.extractfile(m_meta).read())
                got.append((m_sig.name.split(".")[0], sig, meta))
    return got


@pytest.fixture(scope="module")
def prepared(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert run_cli(f"data.root={small_corpus}", f"out={out}", "pipeline.shard_max_epochs=4") == 0
    return out


def test_shard_contract(prepared: Path) -> None:
    m = json.loads((prepared / "manifest.json").read_text())
    assert m["complete"] and m["n_recordings"] == 3 and m["n_patients"] == 3
    assert m["n_chans"] == 8 and m["sfreq"] == 250.0 and m["epoch_s"] == 30.0
    assert m["n_epochs"] == sum(s["n_epochs"] for s in m["shards"]) == 33
    g0, g1 = (group_id(f"patient-0{i}/patient-0{i}_rec-01.edf") for i in (0, 1))
    assert [s["path"] for s in m["shards"]][:4] == [
        f"shards/shard-{g0}-000.tar",
        f"shards/shard-{g0}-001.tar",
        f"shards/shard-{g0}-002.tar",
        f"shards/shard-{g1}-000.tar",
    ]
    assert m["shards"][0]["recording_id"] == "patient-00-patient-00_rec-01"
    got = samples(prepared)
    assert len(got) == 33
    key, sig, meta = got[0]
    assert key == "patient-00-patient-00_rec-01_00000" and "." not in key
    assert sig.dtype == np.float16 and sig.shape == (8, 7500)
    assert 5 < float(sig.astype(np.float32).std()) < 200  # µV
    assert set(meta) == set(META_KEYS)  # the documented sample schema, no more, no less
    assert meta["patient_id"] == "patient-00" and meta["ch_names"][0] == "left_frontal"
    assert set(meta["labels"]) >= {"seizure", "events", "sleep_stage"}
    assert 0.0 <= meta["quality"]["score"] <= 1.0
    seizure = [g[2]["labels"]["seizure"] for g in got]
    assert 0.15 <= np.mean(seizure) <= 0.35
    assert m["label_counts"]["seizure"]["1"] == sum(seizure)


def test_second_run_skips_everything(
    prepared: Path, small_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shard_contents(prepared)
    assert (
        run_cli(f"data.root={small_corpus}", f"out={prepared}", "pipeline.shard_max_epochs=4") == 0
    )
    assert "3 already done" in capsys.readouterr().out
    assert shard_contents(prepared) == before


def test_changed_config_refuses_same_out(prepared: Path, small_corpus: Path) -> None:
    from efm.errors import EfmError

    with pytest.raises(EfmError, match="pipeline.l_freq"):
        run_cli(
            f"data.root={small_corpus}",
            f"out={prepared}",
            "pipeline.shard_max_epochs=4",
            "pipeline.l_freq=1.0",
        )


def test_bad_inputs_are_logged_and_the_run_goes_on(
    small_corpus: Path, real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    good = sorted(small_corpus.glob("*/*.edf"))[0]
    blob = good.read_bytes()
    shutil.copy(good, root / "a_good.edf")
    (root / "b_truncated.edf").write_bytes(blob[: len(blob) // 3])
    (root / "c_zero.edf").write_bytes(b"")
    (root / "d_corrupt.edf").write_bytes(blob[:236] + b"x" * 8 + blob[244:])
    shutil.copy(real_data / "mne-misc-data" / "sample_ecog_ieeg.fif", root / "e_wrongname.edf")
    shutil.copy(real_data / "mne-testing-data" / "test_raw.set", root / "f_layout.set")
    shutil.copy(real_data / "mne-testing-data" / "test_raw.fdt", root / "f_layout.fdt")
    shutil.copy(real_data / "mne-testing-data" / "chtypes_edf.edf", root / "g_short.edf")
    (root / "notes.txt").write_text("not a recording")
    out = tmp_path / "out"
    assert run_cli(f"data.root={root}", f"out={out}") == 1
    text = capsys.readouterr().out
    assert "1 ok" in text and "6 failed" in text
    fails = {
        f["source"]: f
        for f in map(
            json.loads, (out / "logs" / "failures-000-of-001.jsonl").read_text().splitlines()
        )
    }
    assert {k: v["kind"] for k, v in fails.items()} == {
        "b_truncated.edf": "truncated",
        "c_zero.edf": "zero-length",
        "d_corrupt.edf": "corrupt",
        "e_wrongname.edf": "unknown-format",
        "f_layout.set": "layout",
        "g_short.edf": "too-short",
    }
    assert all(f["reason"] and "\n" not in f["reason"] for f in fails.values())
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_recordings"] == 1 and m["n_failed"] == 6 and m["complete"]


def test_partitions_cover_the_whole_run(prepared: Path, small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    for i in range(2):
        assert (
            run_cli(
                f"data.root={small_corpus}",
                f"out={out}",
                "pipeline.shard_max_epochs=4",
                "--shard-index",
                str(i),
                "--num-shards",
                "2",
            )
            == 0
        )
    assert shard_contents(out) == shard_contents(prepared)
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["n_epochs"] == 33


def _kill_when(cmd: list[str], env: dict[str, str], out: Path, ready) -> None:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not ready(out):
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _resume_lines(out: Path) -> int:
    p = out / "logs" / "resume-000-of-001.jsonl"
    return len(p.read_text().splitlines()) if p.is_file() else 0


def _tmps(out: Path) -> set[str]:
    d = out / "shards"
    return {p.name for p in d.iterdir() if ".tmp" in p.name} if d.is_dir() else set()


def test_kill_and_resume_gives_identical_shards(
    prepared: Path, small_corpus: Path, tmp_path: Path, efm_cache: Path
) -> None:
    """SIGKILL at startup, after the first file, after one more file; then finish."""
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "efm.cli",
        "prepare",
        "recipe=epi250k",
        *FAST,
        f"data.root={small_corpus}",
        f"out={out}",
        "pipeline.shard_max_epochs=4",
    ]
    env = {**os.environ, "EFM_CACHE": str(efm_cache), "PYTHONPATH": str(ROOT)}
    points = [
        ("startup", lambda o, n0: (o / "config.json").exists()),
        ("after a file", lambda o, n0: _resume_lines(o) >= n0 + 1),
        ("after one more file", lambda o, n0: _resume_lines(o) >= n0 + 1),
    ]
    for name, ready in points:
        n0 = _resume_lines(out)
        _kill_when(cmd, env, out, lambda o, r=ready, n=n0: r(o, n))
        assert _resume_lines(out) < 3, f"the run finished before the kill point {name!r}"
    assert not (out / "manifest.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not _tmps(out)
    assert shard_contents(out) == shard_contents(prepared)
    assert [k for k, _, _ in samples(out)] == [k for k, _, _ in samples(prepared)]
    assert _resume_lines(out) == 3


def test_resume_from_every_crash_state(prepared: Path, small_corpus: Path, tmp_path: Path) -> None:
    """The states a kill can leave, made by hand: each is repaired to the uninterrupted result."""
    out = tmp_path / "out"
    shutil.copytree(prepared, out)
    log_path = out / "logs" / "resume-000-of-001.jsonl"
    first = log_path.read_text().splitlines()[0]
    log_path.write_text(first + "\n" + '{"sha256": "torn li')  # killed while appending
    (out / "manifest.json").unlink()  # killed before the manifest
    g1, g2 = (group_id(f"patient-0{i}/patient-0{i}_rec-01.edf") for i in (1, 2))
    half = (out / "shards" / f"shard-{g1}-001.tar").read_bytes()
    (out / "shards" / f"shard-{g1}-001.tar").unlink()  # file 1 killed mid-group ...
    (out / "shards" / f"shard-{g1}-001.tar.tmp-99999").write_bytes(half[: len(half) // 2])
    (out / "shards" / f"shard-{g2}-000.tar").write_bytes(b"stale")  # file 2: renamed, unlogged
    assert run_cli(f"data.root={small_corpus}", f"out={out}", "pipeline.shard_max_epochs=4") == 0
    assert not _tmps(out)
    assert shard_contents(out) == shard_contents(prepared)
    assert _resume_lines(out) == 3  # the torn line was dropped before appending
    assert json.loads((out / "manifest.json").read_text())["n_epochs"] == 33


def test_process_pool_gives_identical_shards(
    prepared: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pool"
    assert (
        run_cli(
            f"data.root={small_corpus}", f"out={out}", "pipeline.shard_max_epochs=4", "workers=2"
        )
        == 0
    )
    assert shard_contents(out) == shard_contents(prepared)


def test_ensure_shards_prepares_the_demo_once(efm_cache: Path) -> None:
    from efm.data.prepare import compose_data

    cfg = compose_data(
        [
            "recipe=epi250k",
            "data.demo_patients=2",
            "data.demo_minutes=5",
            "pipeline.sleep_staging=none",
        ]
    )
    out = ensure_shards(cfg)
    assert out.parent == efm_cache / "shards" and out.name == config_hash(cfg)
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_epochs"] == 20 and m["complete"]
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert ensure_shards(cfg) == out
    # the cache is keyed by what decides the shards: another recipe with the same data reuses them
    assert ensure_shards({**cfg, "recipe": "my-copy-of-epi250k"}) == out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # not prepared again
    other = ensure_shards({**cfg, "pipeline": {**cfg["pipeline"], "epoch_s": 20.0}})
    assert other != out and json.loads((other / "manifest.json").read_text())["n_epochs"] == 30
    assert not list((efm_cache / "shards").glob("*.lock"))


def test_failed_preparation_leaves_no_lock_file(efm_cache: Path, tmp_path: Path) -> None:
    from efm.data.prepare import compose_data
    from efm.errors import EfmError

    root = tmp_path / "in"
    root.mkdir()
    (root / "p1_broken.edf").write_bytes(b"not an EDF file" * 100)
    cfg = compose_data(["recipe=epi250k", f"data.root={root}"])
    with pytest.raises(EfmError, match="no epochs could be prepared"):
        ensure_shards(cfg)
    assert not [p for p in efm_cache.rglob("*") if p.name.endswith(".lock")]


def test_yasa_notice_once_and_never_for_ieeg(caplog: pytest.LogCaptureFixture) -> None:
    import importlib.util

    from efm.data import sleep
    from efm.data.prepare import check_pipeline, compose_data

    if importlib.util.find_spec("yasa") is not None:
        pytest.skip("YASA is installed: there is no notice")
    sleep._NOTICED.clear()
    ieeg = compose_data(["recipe=diver1-iEEG"])
    eeg = compose_data(["recipe=epi250k"])
    with caplog.at_level(logging.INFO, "efm.data.sleep"):
        check_pipeline(ieeg["pipeline"])
        ensure_shards_hash = config_hash(eeg)  # hashing a config says nothing either
        assert not [r for r in caplog.records if "YASA" in r.getMessage()], ensure_shards_hash
        for _ in range(3):
            check_pipeline(eeg["pipeline"])
    assert [r.getMessage() for r in caplog.records if "YASA" in r.getMessage()] == [
        "sleep staging skipped: YASA is not installed (pip install 'efm[sleep]')"
    ]


def test_ieeg_path_keeps_every_channel(real_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(real_data / "eegmat" / "Subject00_1.edf", root)
    out = tmp_path / "out"
    assert (
        prepare.cli(
            [
                "recipe=diver1-iEEG",
                *FAST,
                f"data.root={root}",
                f"out={out}",
                "pipeline.min_epochs=2",
            ]
        )
        == 0
    )
    _, sig, meta = samples(out)[0]
    assert sig.shape == (21, 15000) and meta["sfreq"] == 500.0
    assert meta["ch_types"].count("ecg") == 1 and len(meta["ch_pos"]) == 21
    assert meta["ch_pos"][0] is not None and meta["patient_id"] == "Subject00"


def test_pipeline_options_are_checked_before_the_run(small_corpus: Path, tmp_path: Path) -> None:
    from efm.errors import ConfigError

    with pytest.raises(ConfigError, match="3 problems.*pipeline.path.*epoch_s.*nope.yaml"):
        run_cli(
            f"data.root={small_corpus}",
            f"out={tmp_path}",
            "pipeline.path=xyz",
            "pipeline.regions=/nope.yaml",
            "pipeline.epoch_s=0",
        )
    assert not (tmp_path / "config.json").exists()


def test_usage_errors(tmp_path: Path) -> None:
    from efm.errors import ConfigError, UsageError

    with pytest.raises(UsageError, match="--bogus"):
        run_cli("--bogus")
    # a missing data.root is a config problem, reported with any others before any set-up
    with pytest.raises(ConfigError, match="data.root=.*missing'?: no such file or directory"):
        run_cli(f"data.root={tmp_path / 'missing'}")


def test_real_format_samples(real_data: Path, tmp_path: Path) -> None:
    """The eeg path on MNE's sample files: one usable recording, each other one with its reason."""
    out = tmp_path / "out"
    code = run_cli(
        f"data.root={real_data}", "data.glob=mne-*/*", f"out={out}", "pipeline.min_epochs=2"
    )
    assert code == 1
    fails = {
        f["source"]: (f["kind"], f["reason"])
        for f in map(
            json.loads, (out / "logs" / "failures-000-of-001.jsonl").read_text().splitlines()
        )
    }
    assert {k: v[0] for k, v in fails.items()} == {
        "mne-misc-data/sample_ecog_ieeg.fif": "layout",  # iEEG grids: no 10-20 electrodes
        "mne-testing-data/chtypes_edf.edf": "too-short",  # 5 s
        "mne-testing-data/multiple_annotation_chans.bdf": "layout",  # no temporal electrodes
        "mne-testing-data/test_raw.set": "layout",  # EEG 000 ... names
    }
    assert all(str(real_data) in reason for _, reason in fails.values())
    got = samples(out)
    assert len(got) == 4  # test_edf_overlapping_annotations.edf: 124 s, EEGMMIDB names "Fp1."
    labels = [m["labels"] for _, _, m in got]
    assert all("task" in lab["events"] for lab in labels)  # its T0/T1/T2 annotations


def test_adding_a_file_keeps_prepared_shards(
    prepared: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Shard names hash the file's path, so a new file never renames or overwrites older shards."""
    root = tmp_path / "in"
    shutil.copytree(small_corpus, root)
    out = tmp_path / "out"
    assert run_cli(f"data.root={root}", f"out={out}", "pipeline.shard_max_epochs=4") == 0
    before = shard_contents(out)
    assert before == shard_contents(prepared)  # the same files under another root
    from efm.data import demo

    demo.generate_recording(root / "a-first", 3, 5.5, 0)  # a new patient that sorts first
    shutil.copy(root / "patient-02" / "patient-02_rec-01.edf", root / "z-copy.edf")  # a duplicate
    assert run_cli(f"data.root={root}", f"out={out}", "pipeline.shard_max_epochs=4") == 0
    after = shard_contents(out)
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_recordings"] == 4 and m["n_epochs"] == 44 and m["complete"]
    assert m["duplicates"] == {"z-copy.edf": "patient-02/patient-02_rec-01.edf"}


def test_annotation_only_edf_and_one_recording_in_two_formats(
    small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hypnogram-style EDF+ (only an 'EDF Annotations' signal) was 'corrupt' with MNE's "No
    appropriate channels found for the given picks"; a recording next to its export (same
    recording id) was prepared twice under one id."""
    import mne

    from efm.data.edf import write_edf

    root = tmp_path / "in"
    root.mkdir()
    good = sorted(small_corpus.glob("*/*.edf"))
    shutil.copy(good[0], root / "rec.edf")  # the export ...
    raw = mne.io.read_raw_edf(good[0], preload=True, verbose="error")
    raw.save(root / "rec.fif", verbose="error")  # ... of this original (another format)
    shutil.copy(good[1], root / "a b.edf")  # two EDFs whose names map to one id "a-b"
    shutil.copy(good[1], root / "a-b.edf")
    write_edf(root / "rec-Hypnogram.edf", np.zeros((0, 60 * 250)), 250.0, [], [(0, 30, "W")])
    out = tmp_path / "out"
    assert run_cli(f"data.root={root}", f"out={out}") == 1  # the hypnogram fails
    text = capsys.readouterr().out
    assert "2 ok" in text and "1 failed (no-signal 1)" in text
    assert (
        "skipped rec.edf: same recording id 'rec' as rec.fif, which is prepared instead "
        "(an EDF export loses to the original format)" in text
    )
    assert "skipped a-b.edf: same recording id 'a-b' as a b.edf" in text
    assert "(the first in sorted path order is kept)" in text
    fails = [
        json.loads(x) for x in (out / "logs" / "failures-000-of-001.jsonl").read_text().splitlines()
    ]
    assert [(f["source"], f["kind"]) for f in fails] == [("rec-Hypnogram.edf", "no-signal")]
    assert "annotation-only EDF+" in fails[0]["reason"] and "picks" not in fails[0]["reason"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["same_recording"] == {"rec.edf": "rec.fif", "a-b.edf": "a b.edf"}
    assert m["n_recordings"] == 2 and m["complete"] and m["n_files"] == 3
    keys = [k for k, _, _ in samples(out)]
    assert len(keys) == len(set(keys)) == 22  # 2 x 11 epochs, every key once
    assert {meta["recording_id"] for _, _, meta in samples(out)} == {"rec", "a-b"}


def test_reader_ch_type_sets_the_modality_of_the_shards(real_data: Path, tmp_path: Path) -> None:
    """An EDF of ECoG channels reads as ``eeg`` (EDF stores no type); ``reader.ch_type=ecog``
    in the recipe makes the shards say ``ieeg`` / ``ecog`` (the default keeps ``eeg``)."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(real_data / "eegmat" / "Subject00_1.edf", root)
    metas = {}
    for ch_type in ("eeg", "ecog"):
        out = tmp_path / ch_type
        args = ["recipe=diver1-iEEG", *FAST, f"data.root={root}", f"out={out}"]
        assert prepare.cli([*args, "pipeline.min_epochs=2", f"reader.ch_type={ch_type}"]) == 0
        metas[ch_type] = samples(out)[0][2]
    assert metas["eeg"]["modality"] == "eeg" and metas["eeg"]["ch_types"].count("eeg") == 20
    assert metas["ecog"]["modality"] == "ieeg"
    assert metas["ecog"]["ch_types"].count("ecog") == 20 and "eeg" not in metas["ecog"]["ch_types"]
    assert metas["ecog"]["ch_types"].count("ecg") == 1  # named ECG: still ecg
    # no 10-20 template positions for intracranial channels named like scalp electrodes
    assert metas["ecog"]["ch_pos"][0] == [None, None, None] or metas["ecog"]["ch_pos"][0] is None
