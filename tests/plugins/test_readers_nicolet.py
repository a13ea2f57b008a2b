"""The buffered Nicolet ``.e`` reader on generated files: segments, streams, German text, time zones.

Besides the writer's own ground truth, header, segments, events and two full-segment reads are
checked against golden values computed by the Swiss-Epilepsy-Center Neo fork (an independent
reader), stored in ``readers_fixtures/nicolet_fork_golden.json`` with their source.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from efm import registry
from efm.errors import ReaderError
from efm.testing import ReaderSuite
from tests.plugins.readers_fixtures.nicolet import default_spec, write_e

pytest.importorskip("neo.rawio")
GOLDEN = Path(__file__).parent / "readers_fixtures" / "nicolet_fork_golden.json"
START_UTC = datetime(2024, 3, 31, 0, 59, 50, tzinfo=UTC)


@pytest.fixture(scope="module")
def e_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nicolet")
    specs = {
        "zurich": (default_spec(seed=0), {}),
        "odd": (default_spec(seed=1, section_s=0.4), {"junk": 41}),  # sections at odd offsets
        "newyork": (
            default_spec(
                seed=2,
                tz="America/New_York",
                start_utc=datetime(2024, 1, 15, 17, 0, 0),
                durations=(2.0, 2.0),
                gap_s=5.0,
            ),
            {},
        ),
    }
    return {k: (write_e(d / f"{k}.e", s, **kw), s) for k, (s, kw) in specs.items()}


def _ours(path, tz=None):
    from efm_plugins.readers.nicolet import NicoletBufferedRawIO

    r = NicoletBufferedRawIO(path, tz=tz)
    r.parse_header()
    return r


def _truth(spec, stream: int, seg: int, chans: list[int] | None = None) -> np.ndarray:
    """The int16 samples of one segment of one stream as written, [T, C]."""
    idx = [c for c, ch in enumerate(spec.channels) if ch.sfreq == (256.0, 64.0)[stream]]
    idx = idx if chans is None else [idx[c] for c in chans]
    out = []
    for c in idx:
        start = sum(spec.n_samples(c, s) for s in range(seg))
        out.append(spec.raw[c][start : start + spec.n_samples(c, seg)])
    return np.stack(out, axis=1)


class TestNicoletSuite(ReaderSuite):
    names = ["nicolet"]

    @pytest.fixture(autouse=True)
    def _files(self, e_files):
        self._paths = [p for p, _ in e_files.values()]
        self._damaged = (e_files["zurich"][0], 200_000)

    def files(self, name):
        return self._paths

    def damaged_source(self, name):
        return self._damaged


def test_streams_segments_and_header(e_files):
    path, spec = e_files["zurich"]
    r = _ours(path, tz="Europe/Zurich")
    assert r.block_count() == 1 and r.segment_count(0) == 3 and r.signal_streams_count() == 2
    assert [r.get_signal_sampling_rate(k) for k in (0, 1)] == [256.0, 64.0]
    ch = r.header["signal_channels"]
    assert list(ch["name"]) == [c.name for c in spec.channels]
    assert list(ch["units"]) == ["uV"] * 8 + ["%"]
    np.testing.assert_array_equal(ch["gain"], [c.resolution for c in spec.channels])
    assert [r.get_signal_size(0, s, 0) for s in range(3)] == [1024, 768, 640]
    assert [r.get_signal_size(0, s, 1) for s in range(3)] == [256, 192, 160]
    # 01:59:50 CET, then 34 s and 67 s later in UTC (03:00:24 and 03:00:57 CEST on the wall clock)
    assert [r.segment_t_start(0, s) for s in range(3)] == [0.0, 34.0, 67.0]
    assert [r.segment_t_stop(0, s) for s in range(3)] == [4.0, 37.0, 69.5]
    assert r.raw_annotations["blocks"][0]["rec_datetime"] == START_UTC
    naive = _ours(path)  # tz=None reads the wall clock as UTC, as the fork does
    assert [naive.segment_t_start(0, s) for s in range(3)] == [0.0, 3634.0, 3667.0]
    assert "Müller" not in repr(r.raw_annotations) and "Jürgen" not in repr(r.raw_annotations)


@pytest.mark.parametrize("key", ["zurich", "odd"])
def test_chunks_match_written_samples_one_read_each(e_files, key):
    path, spec = e_files[key]
    r = _ours(path)
    rng = np.random.default_rng(0)
    r.file.reset_counters()
    n_chunks = 0
    for stream in (0, 1):
        n_ch = r.signal_channels_count(stream)
        for seg in range(r.segment_count(0)):
            n = r.get_signal_size(0, seg, stream)
            truth = _truth(spec, stream, seg)
            reqs = [(0, n, None), (n - 3, n, [n_ch - 1]), (1, 2, [0])]
            for _ in range(6):
                i0, i1 = sorted(rng.integers(0, n + 1, 2))
                k = rng.integers(1, n_ch + 1)
                reqs.append((int(i0), int(i1), rng.permutation(n_ch)[:k].tolist()))
            for i0, i1, chans in reqs:
                got = r.get_analogsignal_chunk(0, seg, i0, i1, stream, channel_indexes=chans)
                want = truth[i0:i1] if chans is None else truth[i0:i1][:, chans]
                np.testing.assert_array_equal(got, want)
                assert got.dtype == np.int16
                n_chunks += i1 > i0
                assert r.file.n_reads == n_chunks  # one read call per chunk
    got = r.get_analogsignal_chunk(0, 1, 5, 50, 0, channel_names=["O2", "Fp1"])
    np.testing.assert_array_equal(got, _truth(spec, 0, 1)[5:50][:, [5, 0]])
    scaled = r.rescale_signal_raw_to_float(got, "float64", 0, [5, 0])
    np.testing.assert_allclose(scaled, got * 0.1)


def test_events_german_text_and_epochs(e_files):
    path, _ = e_files["zurich"]
    r = _ours(path, tz="Europe/Zurich")
    ev = {s: r.get_event_timestamps(0, s, 0) for s in range(3)}
    ep = {s: r.get_event_timestamps(0, s, 1) for s in range(3)}
    np.testing.assert_allclose(ev[0][0], [0.5, 2.375])
    assert list(ev[0][2]) == [
        "Augen geschlossen",
        "Patient reagiert nicht – Ärztin informiert → Notfallmedikation",
    ]
    assert (
        ev[0][1] is None
        and list(ev[1][2]) == ["Eyes closed"]
        and list(ev[2][2]) == ["Kom.-Aufwachen"]
    )
    np.testing.assert_allclose(ev[1][0], [35.0])
    assert list(ep[0][2]) == ["Anfall"] and list(ep[1][2]) == ["Zähneputzen, Bewegungsartefakt"]
    np.testing.assert_allclose(ep[1][1], [1.0])
    np.testing.assert_allclose(ep[2][0], [69.0])
    assert [r.event_count(0, s, 1) for s in range(3)] == [1, 1, 1]
    np.testing.assert_allclose(r.rescale_event_timestamp(ev[0][0], "float64", 0), [0.5, 2.375])


def test_against_fork_golden_values(e_files):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    path, _ = e_files["zurich"]  # default_spec(seed=0), the file the golden values come from
    r = _ours(path)  # the fork reads local dates as UTC: compare with tz=None
    ch = r.header["signal_channels"]
    for mine, theirs in zip(ch, golden["channels"], strict=True):
        assert str(mine["name"]) == theirs["name"] and str(mine["units"]) == theirs["units"]
        assert float(mine["sampling_rate"]) == theirs["sampling_rate"]
        assert float(mine["gain"]) == theirs["gain"] and float(mine["offset"]) == theirs["offset"]
        assert str(mine["stream_id"]) == theirs["stream_id"]
    for s, seg in enumerate(golden["segments"]):
        assert r.seg_utc[s].isoformat() == seg["date"]
        assert r.get_signal_size(0, s, 0) == seg["n"]
        assert r.segment_t_stop(0, s) - r.segment_t_start(0, s) == seg["duration"]
    events = sorted(r._events, key=lambda e: e["t"])
    for mine, theirs in zip(events, golden["events"], strict=True):
        assert mine["t"] == pytest.approx(theirs["t"], abs=1e-6)
        assert mine["duration"] == theirs["duration"] and mine["user"] == theirs["user"]
        if theirs["type"] in ("Annotation", "Event Comment"):
            if all(ord(ch) < 256 for ch in mine["text"]):  # the fork garbles text above U+00FF
                assert mine["label"] == theirs["text"]
            else:
                assert mine["label"] != theirs["text"]
        elif theirs["type"] != "UNKNOWN":
            assert mine["label"] == theirs["type"]
    for key, ref in golden["data"].items():
        seg = int(key[3])
        raw = r.get_analogsignal_chunk(0, seg, 0, r.get_signal_size(0, seg, 0), 0)
        assert list(raw.shape) == ref["shape"]
        assert (
            hashlib.sha256(np.ascontiguousarray(raw, "<i2").tobytes()).hexdigest() == ref["sha256"]
        )


def test_recording_concatenates_segments_in_volts(e_files):
    path, spec = e_files["zurich"]
    rec = registry.create("readers", "nicolet", tz="Europe/Zurich").read(path)
    assert rec.sfreq == 256.0 and rec.n_chans == 7 and rec.n_times == 1024 + 768 + 640
    want = np.concatenate([_truth(spec, 0, s) for s in range(3)]).T * 0.1e-6
    np.testing.assert_allclose(rec.data, want, rtol=1e-6, atol=1e-12)
    assert rec.meas_date == START_UTC.timestamp()
    anns = [(a.onset, a.duration, a.description, a.annotator) for a in rec.annotations]
    assert (1.25, 2.0, "Anfall", "Dr. Weiß") in anns
    assert (4.0 + 1.5, 1.0, "Zähneputzen, Bewegungsartefakt", "MC") in anns
    assert (7.0 + 0.25, 0.0, "Kom.-Aufwachen", "MC") in anns
    bounds = [(a.onset, a.description) for a in rec.annotations if a.annotator == "efm.reader"]
    assert bounds == [(4.0, "BAD boundary"), (4.0, "EDGE boundary")] + [
        (7.0, "BAD boundary"),
        (7.0, "EDGE boundary"),
    ]
    assert [s["t_start"] for s in rec.extra["segments"]] == [0.0, 34.0, 67.0]
    assert rec.extra["other_streams"] == [{"sfreq": 64.0, "ch_names": ["EKG", "SpO2"]}]
    assert rec.patient_id.startswith("nicolet-") and "Müller" not in repr(rec.extra)
    slow = registry.create("readers", "nicolet", stream=1).read(path)
    assert slow.sfreq == 64.0 and slow.ch_types == ["ecg", "misc"]
    spo2 = np.concatenate([_truth(spec, 1, s)[:, 1] for s in range(3)]) * 0.5  # "%": not scaled
    np.testing.assert_allclose(slow.data[1], spo2, rtol=1e-6)


def test_time_zone_offsets(e_files):
    path, spec = e_files["newyork"]  # 12:00 EST (UTC-5) on the wall clock
    ny = registry.create("readers", "nicolet", tz="America/New_York").read(path)
    assert ny.meas_date == datetime(2024, 1, 15, 17, 0, 0, tzinfo=UTC).timestamp()
    assert [s["t_start"] for s in ny.extra["segments"]] == [0.0, 7.0]
    naive = registry.create("readers", "nicolet").read(path)
    assert naive.meas_date - ny.meas_date == -5 * 3600
    with pytest.raises(ReaderError, match="time zone"):
        registry.create("readers", "nicolet", tz="Mars/Olympus").read(path)


def test_bad_files_raise_reader_error(tmp_path, e_files):
    path, spec = e_files["zurich"]
    good = path.read_bytes()
    reader = registry.create("readers", "nicolet")
    bad = {
        "tail.e": good[:-100],  # the index at the end is cut
        "half.e": good[: len(good) // 2],
        "head.e": good[:5000],
        "tags.e": good[:176] + b"\xff" * 84 + good[260:],
    }
    for name, payload in bad.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ReaderError) as err:
            reader.read(tmp_path / name)
        assert name in str(err.value)
    assert "truncated" in str(pytest.raises(ReaderError, reader.read, tmp_path / "tail.e").value)
