"""Scale-out on CPU with gloo: the global batch, reduced losses, the DDP conformance check, disjoint
data per rank x worker, a dead rank."""

from __future__ import annotations

import collections
import csv
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from efm import cli
from efm.data.synthetic import write_synthetic_shards
from efm.errors import EfmError
from efm.testing.ddp import check_distributed, free_port, random_batch, unused_problems
from efm.train import checkpoint as ckpt
from efm.train import distributed
from efm.train.loader import ShardStream, read_manifest
from efm.train.loop import build_objective, pretrain
from tests.core.train.tiny import TinyMasked, register_tiny, tiny_config

SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1"),
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"))


def test_global_batch_splits_over_ranks_and_micro_steps():
    assert distributed.micro_batch(256, 8) == 32
    assert distributed.micro_batch(16, 2, grad_accum=2) == 4
    with pytest.raises(EfmError, match=r"batch_size=10 is the global batch .* multiple of 4"):
        distributed.micro_batch(10, 2, grad_accum=2)
    with pytest.raises(EfmError, match="multiple of 8"):
        distributed.micro_batch(4, 8)
    assert distributed.strategy("auto", 1) == "none" and distributed.strategy("auto", 2) == "ddp"
    with pytest.raises(EfmError, match="options: auto, ddp, fsdp, none"):
        distributed.strategy("zero3", 2)


def test_grad_accum_must_divide_the_batch_in_the_config(tmp_path):
    from efm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"batch_size=10 .* grad_accum=4"):
        tiny_config(tmp_path, batch_size=10, grad_accum=4)


class Unused(TinyMasked):
    """The tiny objective with a head its forward never calls (the MAE crash in miniature)."""

    def __init__(self, backbone, representation, mask_ratio=0.5, declare=True):
        super().__init__(backbone, representation, mask_ratio)
        self.extra = nn.Linear(4, 4)
        self.declare = declare

    def unused_parameters(self):
        return {"extra.weight", "extra.bias", "decoder_pred.bias"} if self.declare else set()


def register_unused() -> None:
    """Register ``tiny_unused`` (declares nothing) for the DDP processes."""
    from dataclasses import dataclass

    from efm import registry

    register_tiny()

    @dataclass
    class Cfg:
        mask_ratio: float = 0.5
        declare: bool = False

    reg = registry.get_registry()
    if "tiny_unused" not in reg.tables["objectives"]:
        reg.register_callback("objectives", "tests", "tests")("tiny_unused", Unused, Cfg)


def _tiny_nodes(objective: str = "tiny_masked", **opts) -> tuple[dict, object]:
    from efm.assemble import DataSpec

    nodes = {
        "representation": {"name": "tiny_rep"},
        "backbone": {"name": "tiny_mlp"},
        "objective": {"name": objective, **opts},
    }
    return nodes, DataSpec(sfreq=50.0, n_times=200, n_chans=8)


def test_unused_declarations_are_checked_against_a_backward_pass():
    register_tiny()
    bb, rep = nn.Module(), None
    from tests.core.train.tiny import TinyBackbone, TinyRep

    bb, rep = TinyBackbone(), TinyRep()
    batch = random_batch(2, 8, 200, seed=0)
    # undeclared: reported, naming the parameters
    (line,) = unused_problems(Unused(bb, rep, declare=False), batch)
    assert "not declared" in line and "'extra.bias', 'extra.weight'" in line
    # declared, but decoder_pred.bias is used: freezing it would stop training it
    (line,) = unused_problems(Unused(bb, rep, declare=True), batch)
    assert "declared unused that do get a gradient: ['decoder_pred.bias']" in line
    # freezing removes the declared ones from the trainable set
    obj = Unused(bb, rep, declare=True)
    assert distributed.freeze_unused(obj) == ["decoder_pred.bias", "extra.bias", "extra.weight"]
    assert not obj.extra.weight.requires_grad and obj.decoder_pred.weight.requires_grad


def test_mae_declares_its_backbone_norm(tmp_path):
    """The crash of `torchrun ... efm run recipe=epi250k`: params 71/72 are backbone.norm.*."""
    from efm.assemble import assemble, data_spec
    from efm.config import compose

    cfg = compose(["recipe=epi250k"])
    torch.manual_seed(0)
    obj = assemble(cfg, data_spec(cfg, 8))
    names = [n for n, _ in obj.named_parameters()]
    assert distributed.unused_parameters(obj) == {"backbone.norm.weight", "backbone.norm.bias"}
    assert {names[71], names[72]} == {"backbone.norm.weight", "backbone.norm.bias"}


def test_conformance_check_catches_an_undeclared_unused_parameter():
    nodes, data = _tiny_nodes("tiny_unused")
    problems = check_distributed(nodes, data, setup=register_unused, steps=1)
    assert any("parameters without a gradient" in p and "extra.weight" in p for p in problems)
    assert any("not declared by unused_parameters()" in p for p in problems), problems


def _pretrain_rank(rank, world, port, shards, run_dir, out, kw, kill_after):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from efm import registry

    registry.get_registry(refresh=True)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        if kill_after is not None and rank == 1:
            pretrain(tiny_config(run_dir, **kw), shards, stop_at=kill_after)
            os.kill(os.getpid(), signal.SIGKILL)  # gone without a word
        result = pretrain(tiny_config(run_dir, **kw), shards)
        torch.save({"losses": result.losses}, out / f"rank{rank}.pt")
    except EfmError as exc:
        torch.save({"error": str(exc), "after_s": time.perf_counter() - t0}, out / f"rank{rank}.pt")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def spawn_pretrain(shards, run_dir, out, world=2, kill_after=None, **kw):
    """``pretrain`` as ``world`` gloo processes; with ``kill_after``, rank 1 is SIGKILLed after
    that step. Returns what each surviving rank saved (losses, or the error it stopped with)."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = torch.multiprocessing.start_processes(
        _pretrain_rank,
        args=(world, free_port(), shards, run_dir, out, kw, kill_after),
        nprocs=world,
        join=False,
        start_method=START,
    )
    for p in ctx.processes:
        p.join(timeout=300)
    return [torch.load(p) for p in sorted(out.glob("rank*.pt"))]


def test_ddp_pretrain_two_ranks_reduces_losses_and_writes_once(shards, tmp_path):
    """torchrun-style DDP on CPU: the global batch of 8 is 4 per rank, the logged loss is the mean
    over ranks (the same on both), rank 0 alone writes the metrics."""
    kw = dict(steps=6, batch_size=8, ckpt_every=6, log_every=3, figures=False)
    r0, r1 = spawn_pretrain(shards, tmp_path / "ddp", tmp_path / "out", **kw)
    assert len(r0["losses"]) == 6 and r0["losses"] == r1["losses"]
    rows = list(csv.DictReader((tmp_path / "ddp/metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]  # one writer: no duplicated rows
    assert float(rows[1]["loss_last"]) == pytest.approx(r0["losses"][-1])
    # the same global batch as 2 ranks x 2 micro-steps of 2 (DDP reduces once per step)
    kw.update(grad_accum=2, ckpt_every=3)
    a0, a1 = spawn_pretrain(shards, tmp_path / "accum", tmp_path / "out2", **kw)
    assert len(a0["losses"]) == 6 and a0["losses"] == a1["losses"]
    state = torch.load(tmp_path / "accum/checkpoints/step-0000006/state.pt", weights_only=True)
    assert state["data_position"] == 12 and len(state["extra"]["rng_ranks"]) == 2


START = os.environ.get("EFM_TEST_START", "fork")


@pytest.mark.parametrize("strategy", [pytest.param("ddp", marks=SLOW), "fsdp"])
def test_killed_rank_stops_the_other_and_the_rerun_resumes_exactly(shards, tmp_path, strategy):
    """SIGKILL rank 1 after step 4 (newest checkpoint: step 3): rank 0 stops with a clear error at
    once; rerunning the same command ends with the weights of an uninterrupted run."""
    kw = dict(
        steps=6, batch_size=8, ckpt_every=3, log_every=2, figures=strategy == "fsdp",
        strategy=strategy, dist_timeout_s=120.0, crops_s=[4.0, 2.0],
    )  # fmt: skip
    full = spawn_pretrain(shards, tmp_path / "full", tmp_path / "o1", **kw)
    (r0,) = spawn_pretrain(shards, tmp_path / "cut", tmp_path / "o2", kill_after=4, **kw)
    assert "another process of this run stopped or stalled" in r0["error"], r0
    assert r0["after_s"] < 100  # before the collective timeout: the peer's socket closed
    again = spawn_pretrain(shards, tmp_path / "cut", tmp_path / "o3", **kw)
    assert again[0]["losses"] == full[0]["losses"][3:]  # resumed at step 3, bit-identical
    last = "checkpoints/step-0000006"
    a, b = (load_file(tmp_path / run / last / "model.safetensors") for run in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if strategy == "fsdp":  # sharded checkpoints, and a single file made from one in one process
        assert (tmp_path / "cut" / last / "dcp").is_dir()
        one = ckpt.consolidate(tmp_path / "cut" / last, tmp_path / "one.safetensors")
        c = load_file(one)
        assert all(torch.equal(a[k], c[k]) for k in a)
        # the same from the command line, given the run directory (its newest checkpoint)
        assert cli.main(["consolidate", str(tmp_path / "cut"), "--out", str(tmp_path / "two.st")]) == 0  # fmt: skip
        d = load_file(tmp_path / "two.st")
        assert d.keys() == a.keys() and all(torch.equal(a[k], d[k]) for k in a)
        (tmp_path / "plain").mkdir()
        assert cli.main(["consolidate", str(tmp_path / "plain")]) == 2  # not sharded: one line
        # evaluation reads an intermediate sharded checkpoint too: consolidated on first use
        mid = tmp_path / "cut/checkpoints/step-0000003"
        assert not (mid / "model.safetensors").exists()
        objective = build_objective(tiny_config(tmp_path / "x"), 8)
        ckpt.load_weights(mid, objective)
        assert (mid / "model.safetensors").is_file()
        assert (tmp_path / "cut/figures/reconstruction.png").is_file()


def test_every_rank_and_worker_reads_a_disjoint_part_of_each_epoch(tmp_path):
    """2 ranks x 2 loader workers over 8 shards: two data epochs give every key exactly twice."""
    root = write_synthetic_shards(tmp_path, epochs_per_shard=8)  # 64 epochs in 8 shards
    urls = read_manifest(root)["urls"]
    assert len(urls) == 8
    keys: collections.Counter[str] = collections.Counter()
    per_rank = []
    for rank in range(2):
        stream = ShardStream(
            urls, 1, seed=3, shuffle_buffer=0, resampled=False, num_workers=2, rank=rank,
            world_size=2,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=2, collate_fn=lambda b: b
        )
        mine = [b["meta"][0]["key"] for _, b in zip(range(64), loader)]  # 2 epochs of 32
        per_rank.append(set(mine))
        keys.update(mine)
    assert len(keys) == 64 and set(keys.values()) == {2}, keys
    # each epoch splits the (reshuffled) shards anew, so a rank sees other keys in epoch 2
    assert len(per_rank[0]) > 32


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_grad_accum_trains_the_same_global_batch_in_micro_steps(shards, tmp_path):
    """batch 8 as 2 micro-steps of 4 reads the same samples as one batch of 8 (one process): the
    first loss is the mean of the micro-steps' losses, close to the whole batch's."""
    kw = dict(steps=4, batch_size=8, ckpt_every=4, figures=False, shuffle_buffer=0)
    one = pretrain(tiny_config(tmp_path / "one", **kw), shards)
    two = pretrain(tiny_config(tmp_path / "two", grad_accum=2, **kw), shards)
    assert two.losses[0] == pytest.approx(one.losses[0], rel=0.05)
    assert two.losses != one.losses
    state = torch.load(tmp_path / "two/checkpoints/step-0000004/state.pt", weights_only=True)
    assert state["data_position"] == 8  # micro-batches read by this process


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EFM_RUN_SLOW"), reason="slow: set EFM_RUN_SLOW=1")
def test_mae_declaration_holds_in_3d():
    """The declaration comes from MAE's probe, so it follows the backbone built: here a 3D Hiera
    over stacked representations."""
    representation = {
        "name": "stack",
        "names": ["spectrogram", "temporal_matrix"],
        "output_size": 64,
    }
    from efm.assemble import assemble, data_spec
    from efm.config import compose

    cfg = compose(["recipe=epi250k", "pipeline.epoch_s=8"])
    cfg["representation"] = representation
    cfg["objective"].update(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    torch.manual_seed(0)
    obj = assemble(cfg, data_spec(cfg, 8))
    assert distributed.unused_parameters(obj) == {"backbone.norm.weight", "backbone.norm.bias"}
    assert unused_problems(obj, random_batch(2, 8, 2000, seed=0)) == []
