"""The buffered Micromed reader against stock Neo and micromed-io, on generated TRC files."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from efm import registry
from efm.errors import ReaderError
from efm.testing import ReaderSuite
from tests.plugins.readers_fixtures.trc import default_spec, expected_volts, write_trc

neo_rawio = pytest.importorskip("neo.rawio")
micromed_trc = pytest.importorskip("micromed_io.trc")


def _multiseg_spec():
    # two segments: TRONCA (time in samples, data offset); the first entry must not be (0, 0)
    return default_spec(
        n_chans=5,
        seconds=6.0,
        seed=3,
        segments=[(100, 0), (5000, 512)],
        notes=[(300, "Schlaf Stadium 2"), (700, "Arousal")],
        triggers=[(64, 4), (900, 9)],
    )


@pytest.fixture(scope="module")
def trc_files(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    d = tmp_path_factory.mktemp("trc")
    specs = {
        "basic": default_spec(),
        "multiseg": _multiseg_spec(),
        "units": default_spec(
            n_chans=4,
            seed=5,
            units=["uV", "mV", "nV", "uV"],
            physical=[(-3200, 3200), (-5, 5), (-2000, 2000), (-100, 100)],
        ),
        "ekg": default_spec(n_chans=12, seconds=2.0, seed=7),
    }
    return {k: (write_trc(d / f"{k}.TRC", s), s) for k, s in specs.items()}


def _ours(path):
    from efm_plugins.readers.micromed import MicromedBufferedRawIO

    r = MicromedBufferedRawIO(path)
    r.parse_header()
    return r


def _neo(path):
    r = neo_rawio.MicromedRawIO(filename=str(path))
    r.parse_header()
    return r


class TestMicromedSuite(ReaderSuite):
    names = ["micromed"]

    @pytest.fixture(autouse=True)
    def _files(self, trc_files):
        self._paths = [p for p, _ in trc_files.values()]
        self._damaged = (trc_files["basic"][0], 2000)

    def files(self, name):
        return self._paths

    def damaged_source(self, name):
        return self._damaged


@pytest.mark.parametrize("key", ["basic", "multiseg", "units"])
def test_header_and_events_equal_stock_neo(trc_files, key):
    path, _ = trc_files[key]
    ours, neo = _ours(path), _neo(path)
    a, b = ours.header["signal_channels"], neo.header["signal_channels"]
    assert list(a["name"]) == list(b["name"]) and list(a["id"]) == list(b["id"])
    np.testing.assert_array_equal(a["sampling_rate"], b["sampling_rate"])
    np.testing.assert_allclose(a["gain"], b["gain"], rtol=1e-12)
    np.testing.assert_allclose(a["offset"], b["offset"], rtol=1e-12)
    assert list(a["units"]) == list(b["units"])
    assert list(ours.header["event_channels"]["name"]) == list(neo.header["event_channels"]["name"])
    assert ours.segment_count(0) == neo.segment_count(0)
    for s in range(neo.segment_count(0)):
        assert ours.get_signal_size(0, s, 0) == neo.get_signal_size(0, s, 0)
        assert ours.segment_t_start(0, s) == pytest.approx(neo.segment_t_start(0, s))
        assert ours.segment_t_stop(0, s) == pytest.approx(neo.segment_t_stop(0, s))
        for ev in range(neo.event_channels_count()):
            assert ours.event_count(0, s, ev) == neo.event_count(0, s, ev)
            ta, da, la = ours.get_event_timestamps(0, s, ev)
            tb, db, lb = neo.get_event_timestamps(0, s, ev)
            np.testing.assert_array_equal(ta, tb)
            assert list(la) == list(lb)
            assert (da is None) == (db is None)
            if da is not None:
                np.testing.assert_array_equal(da, db)
                np.testing.assert_allclose(
                    ours.rescale_epoch_duration(da, "float64", ev),
                    neo.rescale_epoch_duration(db, "float64", ev),
                )
            np.testing.assert_allclose(
                ours.rescale_event_timestamp(ta, "float64", ev),
                neo.rescale_event_timestamp(tb, "float64", ev),
            )
    assert (
        ours.raw_annotations["blocks"][0]["rec_datetime"]
        == neo.raw_annotations["blocks"][0]["rec_datetime"]
    )


@pytest.mark.parametrize("key", ["basic", "multiseg"])
def test_chunks_equal_stock_neo_one_read_each(trc_files, key):
    path, _ = trc_files[key]
    ours, neo = _ours(path), _neo(path)
    rng = np.random.default_rng(0)
    n_ch = ours.signal_channels_count(0)
    requests = []
    for s in range(ours.segment_count(0)):
        n = ours.get_signal_size(0, s, 0)
        requests += [(s, 0, n, None), (s, 0, 1, [0]), (s, n - 1, n, None), (s, 5, 5, None)]
        for _ in range(8):
            i0, i1 = sorted(rng.integers(0, n + 1, 2))
            chans = sorted(rng.choice(n_ch, rng.integers(1, n_ch + 1), replace=False).tolist())
            requests.append((s, int(i0), int(i1), chans))
    ours.file.reset_counters()
    expected_reads = 0
    for s, i0, i1, chans in requests:
        a = ours.get_analogsignal_chunk(0, s, i0, i1, 0, channel_indexes=chans)
        b = neo.get_analogsignal_chunk(0, s, i0, i1, 0, channel_indexes=chans)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == (i1 - i0, n_ch if chans is None else len(chans))
        np.testing.assert_array_equal(
            ours.rescale_signal_raw_to_float(a, "float64", 0, chans),
            neo.rescale_signal_raw_to_float(b, "float64", 0, chans),
        )
        expected_reads += i1 > i0
        assert ours.file.n_reads == expected_reads  # exactly one read call per non-empty chunk
    assert ours.file.n_seeks == expected_reads
    names = ["C3", "Fp1"]
    np.testing.assert_array_equal(
        ours.get_analogsignal_chunk(0, 0, 3, 40, 0, channel_names=names),
        neo.get_analogsignal_chunk(0, 0, 3, 40, 0, channel_names=names),
    )


@pytest.mark.parametrize("key", ["basic", "units", "ekg"])
def test_values_names_rates_notes_equal_micromed_io(trc_files, key):
    path, spec = trc_files[key]
    rec = registry.create("readers", "micromed").read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mio = micromed_trc.MicromedTRC(path)
        ref = mio.get_data(use_volt=True)  # [C, T] volts
        part = mio.get_data(start=100, stop=300, use_volt=True)
    hdr = mio.get_header()
    assert [f"{n}-{g}" for n, g in zip(rec.ch_names, rec.extra["grounds"])] == hdr.ch_names
    assert rec.sfreq == mio.get_sfreq() == spec.sfreq
    np.testing.assert_allclose(rec.data, ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rec.data[:, 100:300], part, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rec.data, expected_volts(spec), rtol=1e-6, atol=1e-12)
    notes = {a.onset: a.description for a in rec.annotations if a.annotator == ""}
    # micromed-io also lists marks past the last sample; Neo and efm drop them
    inside = rec.n_times
    assert notes == {int(s) / rec.sfreq: t for s, t in mio.get_notes().items() if s < inside}
    trig = {a.onset: a.description for a in rec.annotations if a.description.startswith("Trigger")}
    assert trig == {
        int(s) / rec.sfreq: f"Trigger {c}" for s, c in mio.get_markers().items() if s < inside
    }
    assert hdr.recording_date == spec.rec_datetime


def test_recording_contents(trc_files):
    path, spec = trc_files["ekg"]
    rec = registry.create("readers", "micromed", tz="Europe/Zurich").read(path)
    assert rec.ch_types == ["eeg"] * 11 + ["ecg"]
    assert rec.meas_date == datetime(2024, 3, 5, 13, 30, 15, tzinfo=UTC).timestamp()  # CET = UTC+1
    assert rec.patient_id.startswith("trc-") and "Muster" not in repr(rec.extra)
    assert rec.patient_id == registry.create("readers", "micromed").read(path).patient_id
    basic = registry.create("readers", "micromed").read(trc_files["basic"][0])
    descr = [(a.onset, a.duration, a.description) for a in basic.annotations]
    assert (1.25, 0.0, "Anfall Beginn äöü") in descr
    assert (1.0, 0.5, "Event A 3") in descr and (2.5, 1.0, "Event B 5") in descr
    seeg = registry.create("readers", "micromed", ch_type="seeg").read(path)
    assert seeg.modality == "ieeg" and seeg.ch_types[0] == "seeg"


def test_multisegment_recording_is_concatenated(trc_files):
    path, spec = trc_files["multiseg"]
    rec = registry.create("readers", "micromed").read(path)
    np.testing.assert_allclose(rec.data, expected_volts(spec), rtol=1e-6, atol=1e-12)
    bounds = [a for a in rec.annotations if a.annotator == "efm.reader"]
    assert [(a.onset, a.description) for a in bounds] == [
        (2.0, "BAD boundary"),
        (2.0, "EDGE boundary"),
    ]
    assert [s["t_start"] for s in rec.extra["segments"]] == [100 / 256, 5000 / 256]
    notes = [(a.onset, a.description) for a in rec.annotations if a.annotator == ""]
    assert notes == [(300 / 256, "Schlaf Stadium 2"), (700 / 256, "Arousal")]


def test_bad_files_raise_reader_error(tmp_path):
    spec = default_spec(n_chans=3, seconds=1.0)
    reader = registry.create("readers", "micromed")
    cases = {
        "partial frame": write_trc(tmp_path / "trunc.TRC", spec, truncate=1),
        "header type": write_trc(tmp_path / "v3.TRC", default_spec(n_chans=3, header_version=3)),
        "truncated header": tmp_path / "short.TRC",
    }
    cases["truncated header"].write_bytes(write_trc(tmp_path / "x.TRC", spec).read_bytes()[:300])
    corrupt = bytearray(write_trc(tmp_path / "zone.TRC", spec).read_bytes())
    corrupt[176:184] = b"GARBAGE "
    (tmp_path / "zone.TRC").write_bytes(bytes(corrupt))
    cases["zone"] = tmp_path / "zone.TRC"
    for why, path in cases.items():
        with pytest.raises(ReaderError) as err:
            reader.read(path)
        assert path.name in str(err.value), why
    assert "truncated" in str(pytest.raises(ReaderError, reader.read, cases["partial frame"]).value)
    lenient = registry.create("readers", "micromed", strict=False).read(cases["partial frame"])
    assert lenient.n_times == spec.raw.shape[0] - 1  # the partial last frame is dropped
