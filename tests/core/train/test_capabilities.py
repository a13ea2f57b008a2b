"""Optional capabilities are protocols in efm.interfaces, not probed attribute spellings or
module-name rules: activation checkpointing and optimizer roles (param_groups)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from efm import registry
from efm.assemble import assemble
from efm.config import compose
from efm.interfaces import SupportsActivationCheckpointing, SupportsParamGroups
from efm.train.loop import _activation_checkpointing
from efm.train.optim import declared_groups, split_params


def test_activation_checkpointing_through_the_protocol(caplog) -> None:
    hiera = registry.create("backbones", "hiera_test")
    assert isinstance(hiera, SupportsActivationCheckpointing)
    assert not hiera.activation_checkpointing
    _activation_checkpointing(hiera)
    assert hiera.activation_checkpointing
    plain = nn.Linear(2, 2)
    assert not isinstance(plain, SupportsActivationCheckpointing)
    with caplog.at_level(logging.WARNING, logger="efm.train.loop"):
        _activation_checkpointing(plain)
    assert "no activation checkpointing" in caplog.text


@pytest.mark.parametrize("recipe", ["epi250k", "diver1-iEEG", "diver1-EEG"])
def test_builtin_components_declare_every_parameter(recipe: str) -> None:
    """efm's own components state their optimizer roles; none relies on the name rule."""
    torch.manual_seed(0)
    obj = assemble(compose([f"recipe={recipe}"]))
    declared = declared_groups(obj)
    trainable = {n for n, p in obj.named_parameters() if p.requires_grad}
    assert trainable <= set(declared), sorted(trainable - set(declared))[:5]
    split = split_params(obj)
    assert set(split.names["muon"]) == {n for n in trainable if declared[n] == "muon"}


class Declared(nn.Module):
    """A module whose ``head`` is declared a hidden matrix: the declaration beats the name rule."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        self.body = nn.Linear(4, 4)

    def param_groups(self) -> dict[str, str]:
        return {"head.weight": "muon", "head.bias": "adamw"}


def test_declaration_wins_over_the_name_rule() -> None:
    outer = nn.Module()
    outer.backbone = Declared()
    split = split_params(outer)
    assert split.names["muon"] == ["backbone.head.weight", "backbone.body.weight"]
    assert isinstance(outer.backbone, SupportsParamGroups)
