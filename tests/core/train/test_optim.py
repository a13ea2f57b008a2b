"""Muon / AdamW split by role, the schedule and the single global gradient clip."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from efm.train.optim import Optimizers, lr_factor, split_params

CFG = {
    "muon_lr": 0.02,
    "muon_momentum": 0.95,
    "muon_weight_decay": 0.0,
    "adamw_lr": 3e-4,
    "adamw_betas": (0.9, 0.95),
    "adamw_eps": 1e-10,
    "weight_decay": 0.05,
    "warmup_steps": 10,
    "min_lr_ratio": 0.1,
    "grad_clip": 1.0,
    "use_muon": True,
}


class Stem(nn.Module):
    efm_optim = "adamw"  # a plugin declaring an input role explicitly

    def __init__(self) -> None:
        super().__init__()
        self.lift = nn.Linear(4, 16)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.representation = nn.Sequential(nn.Linear(4, 4))
        self.patch_embed = nn.Conv2d(3, 16, 4, stride=4)
        self.custom_stem = Stem()
        self.pos_embed = nn.Parameter(torch.zeros(1, 10, 16))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 16))
        self.bias_table = nn.Embedding(2, 4)  # 2-D but a table, like MOIRAI's attention bias
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {"qkv": nn.Linear(16, 48), "proj": nn.Linear(16, 16), "norm": nn.LayerNorm(16)}
            )
            for _ in range(2)
        )
        self.decoder_embed = nn.Linear(16, 8)  # hidden: decoder input projection
        self.decoder_pred = nn.Linear(8, 48)  # output layer
        self.head = nn.Linear(16, 3)


def test_split_by_role():
    split = split_params(Net())
    assert split.names["muon"] == [
        "blocks.0.qkv.weight",
        "blocks.0.proj.weight",
        "blocks.1.qkv.weight",
        "blocks.1.proj.weight",
        "decoder_embed.weight",
    ]
    assert set(split.names["decay"]) == {
        "representation.0.weight",
        "patch_embed.weight",
        "custom_stem.lift.weight",
        "decoder_pred.weight",
        "head.weight",
    }
    no_decay = set(split.names["no_decay"])
    assert {
        "pos_embed",
        "mask_token",
        "bias_table.weight",
        "blocks.0.norm.weight",
        "blocks.0.qkv.bias",
        "head.bias",
    } <= no_decay
    n_all = len(list(Net().parameters()))
    assert sum(len(v) for v in split.names.values()) == n_all


def test_no_muon_and_shared_parameters():
    net = Net()
    net.tied = net.head  # the same parameters reachable twice are assigned once
    split = split_params(net, use_muon=False)
    assert not split.muon
    assert sum(len(v) for v in split.names.values()) == len(list(net.parameters()))


def test_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    )
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 100, 0.1) == pytest.approx(0.1)


def test_global_clip_then_both_step():
    torch.manual_seed(0)
    net = Net()
    opts = Optimizers(net, CFG, total_steps=100)
    assert [type(o).__name__ for o in opts.optimizers] == ["Muon", "AdamW"]
    ref = Net()
    ref.load_state_dict(net.state_dict())
    x = torch.randn(5, 16)
    loss = (net.head(net.blocks[0]["proj"](x)) ** 2).sum() * 100 + net.pos_embed.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    got = opts.clip_and_step()
    assert got == pytest.approx(float(norm), rel=1e-5)
    scale = CFG["grad_clip"] / (float(norm) + 1e-6)
    # AdamW's first step is lr * sign-like, so check Muon against a reference fed the clipped grad
    p_ref = ref.blocks[0]["proj"].weight
    p_ref.grad = grads["blocks.0.proj.weight"] * scale
    muon = torch.optim.Muon(
        [p_ref],
        lr=CFG["muon_lr"] * lr_factor(0, 10, 100, 0.1),
        momentum=0.95,
        weight_decay=0.0,
        nesterov=True,
    )
    muon.step()
    torch.testing.assert_close(net.blocks[0]["proj"].weight, p_ref)
    # the schedule moved both optimizers to step 1 of the warmup
    lrs = opts.lrs()
    assert lrs["lr_muon"] == pytest.approx(0.02 * 0.2) and lrs["lr_adamw"] == pytest.approx(
        3e-4 * 0.2
    )
    # untouched parameters (no gradient) did not move, decayed ones without grad neither
    torch.testing.assert_close(net.blocks[1]["qkv"].weight, ref.blocks[1]["qkv"].weight)


def test_state_round_trip():
    net = Net()
    opts = Optimizers(net, CFG, total_steps=50)
    (net.blocks[0]["qkv"](torch.randn(2, 16)).sum() + net.head.weight.sum()).backward()
    opts.clip_and_step()
    other = Optimizers(net, CFG, total_steps=50)
    other.load_state_dict(opts.state_dict())
    assert other.lrs() == opts.lrs()
    assert other.schedulers[0].last_epoch == 1


def test_mup_multipliers_scale_adamw_groups_only():
    net = Net()
    net.lr_multipliers = lambda: {"head.weight": 0.25, "blocks.0.qkv.weight": 0.5}  # muP-style
    opts = Optimizers(net, CFG, total_steps=10)
    adamw = opts.optimizers[1]
    by_mult = {g["lr_mult"]: g for g in adamw.param_groups}
    assert set(by_mult) == {1.0, 0.25}
    head = by_mult[0.25]
    assert [p is net.head.weight for p in head["params"]] == [True]
    assert head["lr"] == pytest.approx(CFG["adamw_lr"] * 0.25 * lr_factor(0, 10, 10, 0.1))
    assert head["weight_decay"] == pytest.approx(CFG["weight_decay"] / 0.25)  # lr * wd constant
    # Muon's matrices ignore the multiplier (blocks.0.qkv stays at the Muon lr)
    assert opts.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.02 * 0.1)
