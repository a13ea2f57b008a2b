"""Optional capabilities are protocols in efm.interfaces, not probed attribute spellings."""

from __future__ import annotations

import logging

from torch import nn

from efm import registry
from efm.interfaces import SupportsActivationCheckpointing
from efm.train.loop import _activation_checkpointing


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
