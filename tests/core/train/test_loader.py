"""The WebDataset loader: batches, determinism, exact resume, crops, node and worker splitting."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds

from efm.data.synthetic import write_synthetic_shards
from efm.errors import EfmError
from efm.train.loader import ShardStream, iter_epochs, make_loader, read_manifest


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(
        tmp_path_factory.mktemp("shards"), n_patients=4, epochs_per_patient=12, epochs_per_shard=10
    )


def _keys(loader, n):
    out = []
    for _, batch in zip(range(n), loader):
        out.append(([m["key"] for m in batch["meta"]], batch["signal"].clone()))
    return out


def test_batch_contract(shards):
    batch = next(iter(make_loader(shards, 6, shuffle_buffer=0)))
    assert batch["signal"].dtype == torch.float32 and tuple(batch["signal"].shape) == (6, 8, 200)
    assert batch["channel_mask"].all() and len(batch["meta"]) == 6
    first = batch["meta"][0]
    assert first["labels"]["seizure"] in (0, 1) and first["sfreq"] == 50.0
    # the float16 µV values come back as stored
    import tarfile

    for url in read_manifest(shards)["urls"]:
        with tarfile.open(url) as tar:
            if f"{first['key']}.signal.npy" in tar.getnames():
                raw = np.load(io.BytesIO(tar.extractfile(f"{first['key']}.signal.npy").read()))
    assert raw.dtype == np.float16
    np.testing.assert_array_equal(batch["signal"][0].numpy(), raw.astype(np.float32))


@pytest.mark.parametrize("workers", [0, 2])
def test_deterministic_and_exact_resume(shards, workers):
    kw = dict(seed=3, num_workers=workers, shuffle_buffer=12, crops_s=[2.0, 1.0, 4.0])
    full = _keys(make_loader(shards, 4, **kw), 9)
    again = _keys(make_loader(shards, 4, **kw), 9)
    resumed = _keys(make_loader(shards, 4, start_batch=5, **kw), 4)
    for (ka, xa), (kb, xb) in zip(full, again):
        assert ka == kb and torch.equal(xa, xb)
    for (ka, xa), (kb, xb) in zip(full[5:], resumed):
        assert ka == kb and torch.equal(xa, xb)
    other = _keys(make_loader(shards, 4, **(kw | {"seed": 4})), 3)
    assert [k for k, _ in other] != [k for k, _ in full[:3]]
    lengths = {x.shape[-1] for _, x in full}
    assert lengths <= {100, 50, 200} and len(lengths) > 1  # crops of 2, 1 and 4 s at 50 Hz


def test_crops_are_windows_of_the_epoch(shards):
    whole = {m["key"]: x for b in iter_epochs(shards, 48) for m, x in zip(b["meta"], b["signal"])}
    batch = next(iter(make_loader(shards, 4, crops_s=[1.0], shuffle_buffer=0)))
    for m, x in zip(batch["meta"], batch["signal"]):
        start, length = m["crop"]
        assert length == 50
        torch.testing.assert_close(x, whole[m["key"]][:, start : start + length])


def test_node_and_worker_split_cover_each_epoch_once(shards):
    """Without resampling, 2 nodes x 1 worker read disjoint shards covering the corpus per pass."""
    n = read_manifest(shards)["n_epochs"]
    urls = read_manifest(shards)["urls"]
    seen = []
    for rank in range(2):
        stream = ShardStream(
            urls, 1, seed=0, shuffle_buffer=0, resampled=False, rank=rank, world_size=2
        )
        per_rank = [b["meta"][0]["key"] for _, b in zip(range(n), stream)]
        seen.append(per_rank)
    # each rank's first pass is its share of the shards; together the two first passes are everything
    n0 = sum(
        e["n_epochs"]
        for e in json.loads((shards / "manifest.json").read_text())["shards"]
        if str(shards / e["path"]) in _first_pass(urls, 0)
    )
    both = set(seen[0][:n0]) | set(seen[1][: n - n0])
    assert len(both) == n
    assert not set(seen[0][:n0]) & set(seen[1][: n - n0])


def _first_pass(urls, rank):
    import random

    order = list(urls)
    random.Random("order-0-0").shuffle(order)
    return order[rank::2]


def test_errors(tmp_path, shards):
    with pytest.raises(EfmError, match="no manifest.json"):
        make_loader(tmp_path, 4)
    with pytest.raises(EfmError, match="resampled"):
        ShardStream(read_manifest(shards)["urls"], 2, resampled=False, num_workers=8, world_size=1)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"shards": [{"path": "x.tar", "n_epochs": 3}]})
    )
    with pytest.raises(EfmError, match="missing"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"shards": [{"path": "x.tar", "n_ep')  # torn
    with pytest.raises(EfmError, match=r"manifest.json is damaged \(JSONDecodeError"):
        read_manifest(tmp_path)


def test_iter_epochs_in_order(shards):
    keys = [m["key"] for b in iter_epochs(shards, 7) for m in b["meta"]]
    assert len(keys) == 48 and keys[:2] == ["P00_R0_00000", "P00_R0_00001"]
    assert len([m for b in iter_epochs(shards, 7, max_epochs=10) for m in b["meta"]]) == 10


def test_half_loader_and_npy_decoding(shards):
    from efm.data.shards import load_npy

    kw = dict(seed=5, shuffle_buffer=8)
    full = next(iter(make_loader(shards, 4, **kw)))
    half = next(iter(make_loader(shards, 4, dtype="float16", **kw)))
    assert half["signal"].dtype == torch.float16
    torch.testing.assert_close(half["signal"].float(), full["signal"], rtol=0, atol=0)
    for arr in (np.arange(12, dtype=np.float16).reshape(3, 4), np.ones((2, 5), order="F")):
        buf = io.BytesIO()
        np.save(buf, arr)
        np.testing.assert_array_equal(load_npy(buf.getvalue()), arr)
    with pytest.raises(EfmError, match="npy"):
        load_npy(b"garbage!" * 4)
    with pytest.raises(EfmError, match="dtype"):
        make_loader(shards, 4, dtype="int8")


def _damage_a_sample(src, dst, key, payload):
    """Copy the shard directory ``src`` to ``dst`` with ``key``'s signal.npy replaced."""
    import shutil
    import tarfile

    shutil.copytree(src, dst)
    for tar_path in sorted((dst / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        if not any(m.name == f"{key}.signal.npy" for m, _ in members):
            continue
        with tarfile.open(tar_path, "w") as tar:
            for m, data in members:
                if m.name == f"{key}.signal.npy":
                    data = payload
                    m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
        return tar_path
    raise AssertionError(f"{key} not found")


def test_a_damaged_sample_is_logged_and_skipped(shards, tmp_path, caplog):
    """A signal.npy holding pickled objects (np.load would need allow_pickle) was a bare
    ValueError ("cannot create an object array from a buffer") that ended the run."""
    from efm.data.shards import BadSample, decode_sample, load_npy

    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    objects = buf.getvalue()
    with pytest.raises(BadSample, match=r"holds object values, not numbers"):
        load_npy(objects)
    bad = {"__key__": "k1", "__url__": "s.tar", "signal.npy": objects, "meta.json": b"{}"}
    with pytest.raises(BadSample, match=r"^sample 'k1' of s.tar: signal.npy holds object"):
        decode_sample(bad)
    with pytest.raises(BadSample, match="meta.json is not valid JSON"):
        decode_sample(bad | {"meta.json": b"{not json", "signal.npy": b""})
    with pytest.raises(BadSample, match="truncated"):
        np.save(buf := io.BytesIO(), np.ones((4, 100), np.float32))
        load_npy(buf.getvalue()[:-8])

    tar = _damage_a_sample(shards, tmp_path / "damaged", "P00_R0_00003", objects)
    caplog.set_level("WARNING", logger="efm.train.loader")
    keys = [m["key"] for b in iter_epochs(tmp_path / "damaged", 7) for m in b["meta"]]
    assert len(keys) == 47 and "P00_R0_00003" not in keys  # 48 epochs, one skipped
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any(f"'P00_R0_00003' of {tar}" in x and "object" in x for x in lines)
    batch = next(iter(make_loader(tmp_path / "damaged", 8, seed=1, shuffle_buffer=4)))
    assert batch["signal"].shape == (8, 8, 200)  # training goes on


def test_only_damaged_samples_is_one_error(shards, tmp_path, monkeypatch):
    import efm.train.loader as loader_mod

    monkeypatch.setattr(loader_mod, "MAX_BAD_IN_A_ROW", 3)
    monkeypatch.setattr(loader_mod, "decode_sample", _always_bad)
    with pytest.raises(EfmError, match="3 shard samples in a row could not be decoded"):
        next(iter(make_loader(shards, 4)))


def _always_bad(sample):
    from efm.data.shards import BadSample

    raise BadSample(f"sample {sample['__key__']!r}: damaged")


def test_synthetic_shards_follow_the_documented_sample_schema(tmp_path):
    """The synthetic writer goes through ``efm.data.shards``: same meta keys as ``efm prepare``."""
    from efm.data.shards import META_KEYS, decode_sample

    out = write_synthetic_shards(tmp_path, n_patients=1, epochs_per_patient=3, n_chans=2)
    url = read_manifest(out)["urls"][0]
    got = [decode_sample(s) for s in wds.WebDataset(url, shardshuffle=False)]
    assert len(got) == 3 and got[0]["signal"].shape == (2, 200)
    assert set(got[0]["meta"]) - {"key"} == set(META_KEYS)
