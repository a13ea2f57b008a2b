"""Buffered readers against stock Neo: read calls per chunk and speed, same files, same run.

Micromed: :class:`efm_plugins.readers.micromed.MicromedBufferedRawIO` against
``neo.rawio.MicromedRawIO`` (0.14.6, mmap per chunk). Nicolet: ``NicoletBufferedRawIO`` against the
Swiss-Epilepsy-Center Neo fork (``np.memmap``), when a copy of its ``nicoletrawio.py`` is given with
``--fork DIR`` (a folder holding ``necfork/nicoletrawio.py``, kept outside this repository).

Files are generated with the test writers into a temporary folder. Each pass reads the whole file
chunk by chunk and rescales to float; "cold" passes first evict the file from the page cache with
``posix_fadvise(DONTNEED)``. Read calls are counted twice: by the reader's own counter and by the
kernel (``/proc/self/io`` ``syscr``); mmap page faults come from ``getrusage``.

Usage: ``python benchmarks/readers.py [--fork /tmp/necfork] [--minutes 10] [--fork-minutes 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugins.readers_fixtures import nicolet as efix  # noqa: E402
from tests.plugins.readers_fixtures import trc as tfix  # noqa: E402


def _syscr() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscr"))


_a = _syscr()
SYSCR_SELF = _syscr() - _a  # read() calls that reading /proc/self/io itself costs


def syscr() -> int:
    return _syscr()


def faults() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_minflt + ru.ru_majflt


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_pass(reader, seg_sizes, chunk, stream, rescale):
    """Read every chunk of every segment; return (seconds, chunks, syscr, page faults)."""
    n_chunks, r0, f0, t0 = 0, syscr(), faults(), time.perf_counter()
    for seg, n in enumerate(seg_sizes):
        for i0 in range(0, n, chunk):
            raw = reader.get_analogsignal_chunk(0, seg, i0, min(n, i0 + chunk), stream)
            x = rescale(reader, raw, stream)
            float(x[-1, -1])  # touch the data
            n_chunks += 1
    dt = time.perf_counter() - t0
    return dt, n_chunks, syscr() - r0 - SYSCR_SELF, faults() - f0


def neo_rescale(reader, raw, stream):
    return reader.rescale_signal_raw_to_float(raw, dtype="float32", stream_index=stream)


def bench(name, make, path, sfreq, chunks_s, stream, repeats, rescale=neo_rescale, counter=None):
    out = []
    for chunk_s in chunks_s:
        chunk = int(chunk_s * sfreq)
        for cache in ("warm", "cold"):
            times, stats = [], None
            for _ in range(repeats):
                reader = make()
                sizes = [
                    reader.get_signal_size(0, s, stream) for s in range(reader.segment_count(0))
                ]
                if counter:
                    counter(reader).reset_counters()
                if cache == "cold":
                    evict(path)
                else:
                    run_pass(reader, sizes, chunk, stream, rescale)  # warm the cache
                    if counter:
                        counter(reader).reset_counters()
                dt, n, reads, pf = run_pass(reader, sizes, chunk, stream, rescale)
                times.append(dt)
                stats = {"chunks": n, "syscr_per_chunk": reads / n, "page_faults_per_chunk": pf / n}
                if counter:
                    stats["counted_reads_per_chunk"] = counter(reader).n_reads / n
            total = sum(sizes)
            mb = path.stat().st_size / 1e6
            out.append(
                {
                    "reader": name,
                    "chunk_s": chunk_s,
                    "cache": cache,
                    "seconds_median": statistics.median(times),
                    "seconds_all": times,
                    "MB_per_s": mb / statistics.median(times),
                    "samples_per_channel": total,
                    **stats,
                }
            )
            print(
                f"{name:28s} chunk {chunk_s:>5}s {cache}: {statistics.median(times) * 1e3:8.1f} ms "
                f"({out[-1]['MB_per_s']:.0f} MB/s) syscr/chunk {stats['syscr_per_chunk']:.2f} "
                f"faults/chunk {stats['page_faults_per_chunk']:.1f}",
                file=sys.stderr,
            )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fork", help="folder with necfork/nicoletrawio.py (outside the repo)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fork-minutes", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "readers.json"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import neo
    from neo.rawio import MicromedRawIO

    from efm_plugins.readers.micromed import MicromedBufferedRawIO
    from efm_plugins.readers.nicolet import NicoletBufferedRawIO

    tmp = Path(tempfile.mkdtemp(prefix="efm-bench-readers-"))
    secs = args.minutes * 60
    chunks_s = [1.0, 30.0]
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "filesystem": "local disk (the temp folder); not a network mount",
        },
        "versions": {"numpy": np.__version__, "neo": neo.__version__},
        "date": datetime.now().isoformat(timespec="seconds"),
        "chunk_s": chunks_s,
        "repeats": args.repeats,
        "files": {},
        "runs": [],
    }

    # Micromed: 64 channels at 1024 Hz, 2-byte samples
    spec = tfix.default_spec(n_chans=64, seconds=secs, sfreq=1024, seed=0)
    trc = tfix.write_trc(tmp / "bench.TRC", spec)
    del spec
    results["files"]["micromed"] = {
        "channels": 64,
        "sfreq": 1024,
        "minutes": args.minutes,
        "MB": trc.stat().st_size / 1e6,
    }

    def ours_trc():
        r = MicromedBufferedRawIO(trc)
        r.parse_header()
        return r

    def neo_trc():
        r = MicromedRawIO(filename=str(trc))
        r.parse_header()
        return r

    results["runs"] += bench(
        "efm MicromedBufferedRawIO",
        ours_trc,
        trc,
        1024,
        chunks_s,
        0,
        args.repeats,
        counter=lambda r: r.file,
    )
    results["runs"] += bench(
        "neo MicromedRawIO (mmap)", neo_trc, trc, 1024, chunks_s, 0, args.repeats
    )
    a, b = ours_trc(), neo_trc()
    results["files"]["micromed"]["values_equal"] = bool(
        np.array_equal(
            a.get_analogsignal_chunk(0, 0, 1000, 40000, 0),
            b.get_analogsignal_chunk(0, 0, 1000, 40000, 0),
        )
    )

    # Nicolet: one segment, one stream (the only layout the fork reads right), 32 ch at 512 Hz
    def nicolet_file(name, minutes):
        rng = np.random.default_rng(0)
        n = int(minutes * 60 * 512)
        chans = [efix.EChannel(f"E{i:02d}", 512.0, 0.1) for i in range(32)]
        raw = [rng.integers(-3000, 3000, n).astype("<i2") for _ in chans]
        espec = efix.ESpec(
            chans, [(datetime(2024, 5, 2, 9, 0, 0), minutes * 60)], raw, section_s=1.0
        )
        path = efix.write_e(tmp / name, espec)
        info = {
            "channels": 32,
            "sfreq": 512,
            "minutes": minutes,
            "section_s": 1.0,
            "MB": path.stat().st_size / 1e6,
        }
        return path, info

    def ours_e(path):
        def make():
            r = NicoletBufferedRawIO(path)
            r.parse_header()
            return r

        return make

    efile, results["files"]["nicolet"] = nicolet_file("bench.e", args.minutes)
    results["runs"] += bench(
        "efm NicoletBufferedRawIO",
        ours_e(efile),
        efile,
        512,
        chunks_s,
        0,
        args.repeats,
        counter=lambda r: r.file,
    )
    if args.fork and Path(args.fork, "necfork", "nicoletrawio.py").exists():
        # the fork's per-chunk index scans grow with file size: compare on a shorter file
        sys.path.insert(0, args.fork)
        from necfork.nicoletrawio import NicoletRawIO

        ffile, info = nicolet_file("fork.e", args.fork_minutes)

        def fork_e():
            r = NicoletRawIO(str(ffile))
            r.parse_header()
            return r

        results["runs"] += bench(
            "efm NicoletBufferedRawIO (fork file)",
            ours_e(ffile),
            ffile,
            512,
            chunks_s,
            0,
            args.repeats,
            counter=lambda r: r.file,
        )
        results["runs"] += bench(
            "SEC fork NicoletRawIO (memmap)",
            fork_e,
            ffile,
            512,
            chunks_s,
            0,
            1,
            rescale=lambda r, raw, s: raw,
        )
        a, f = ours_e(ffile)(), fork_e()
        equal = []
        for i0 in (0, 512, 5 * 512):
            mine = a.rescale_signal_raw_to_float(
                a.get_analogsignal_chunk(0, 0, i0, i0 + 512, 0), "float64", 0
            )
            equal.append(bool(np.allclose(mine, f.get_analogsignal_chunk(0, 0, i0, i0 + 512, 0))))
        info["fork"] = {
            "source": "Swiss-Epilepsy-Center/python-neo@c1c04378 neo/rawio/"
            "nicoletrawio.py + 256-byte signal-info skip, run outside the repo",
            "chunks_equal_to_efm_at_0_1_5_s": equal,
            "repeats": 1,
        }
        results["files"]["nicolet_fork_comparison"] = info
    else:
        results["files"]["nicolet_fork_comparison"] = "not run (no --fork folder given)"
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
