"""`efm prepare --shard-index i --num-shards n` (a Slurm job array, examples/slurm/prepare.sbatch):
the union of the n partitions, written into one ``out``, is the unpartitioned run byte for byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from efm.data import prepare
from efm.errors import UsageError

FAST = ["pipeline.sleep_staging=none", "pipeline.shard_max_epochs=4", "--no-progress"]


def files(out: Path) -> dict[str, bytes]:
    """Every shard, byte for byte, by path under ``out``."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "shards").rglob("*"))}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def run(corpus: Path, out: Path, *args: str) -> int:
    return prepare.cli(["recipe=epi250k", *FAST, f"data.root={corpus}", f"out={out}", *args])


SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1"),
]


# one file per partition; 4 > 3 files: one partition has none
@pytest.mark.parametrize("n", [3, pytest.param(4, marks=SLOW)])
def test_union_of_partitions_is_the_unpartitioned_run(small_corpus, tmp_path, n):
    whole = tmp_path / "whole"
    assert run(small_corpus, whole) == 0
    parts = tmp_path / "parts"
    for i in reversed(range(n)):  # any order: the array's tasks finish when they finish
        assert run(small_corpus, parts, "--shard-index", str(i), "--num-shards", str(n)) == 0
        if i:
            assert not manifest(parts)["complete"]  # not before every partition is done
    assert files(parts) == files(whole) and len(files(whole)) == 9
    assert manifest(parts) == manifest(whole)
    assert manifest(parts)["complete"] and manifest(parts)["n_epochs"] == 33


def test_partition_index_out_of_range_is_a_usage_error(small_corpus, tmp_path):
    with pytest.raises(UsageError, match=r"--shard-index 4 must be in \[0, 4\)"):
        prepare.prepare({"data": {}, "pipeline": {}}, shard_index=4, num_shards=4, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_slurm_array_script_runs_the_partitions_concurrently(small_corpus, tmp_path):
    """examples/slurm/prepare.sbatch as a 2-task array, both tasks at once into one folder."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    whole = tmp_path / "whole"
    assert run(small_corpus, whole) == 0
    out = tmp_path / "array"
    script = ROOT / "examples" / "slurm" / "prepare.sbatch"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.update(SLURM_ARRAY_TASK_COUNT="2", SLURM_CPUS_PER_TASK="1")
    args = ["recipe=epi250k", f"data.root={small_corpus}", f"out={out}", *FAST[:2]]
    tasks = [
        subprocess.Popen(
            ["bash", str(script), *args],
            env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for t in tasks:
        assert t.wait(timeout=300) == 0, t.stdout.read() if t.stdout else ""
    assert files(out) == files(whole)
    assert manifest(out) == manifest(whole)
