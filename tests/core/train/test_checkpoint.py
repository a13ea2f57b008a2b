"""Checkpoints: damaged or foreign files are one clear error; weights carry their architecture."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from efm.cli import main
from efm.data.synthetic import write_synthetic_shards
from efm.errors import EfmError
from efm.train import checkpoint as ckpt
from efm.train.loop import pretrain
from efm_plugins.backbones.hiera import Hiera
from tests.core.train.tiny import tiny_config


class Payload:
    """Stands for a class a tampered checkpoint smuggles in (safe loading refuses it)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    shards = write_synthetic_shards(tmp_path_factory.mktemp("shards"), n_patients=2)
    run_dir = tmp_path_factory.mktemp("run")
    pretrain(tiny_config(run_dir, steps=2, ckpt_every=2, log_every=1, figures=False), shards)
    return run_dir, shards


def _copy_run(run, tmp_path):
    import shutil

    shutil.copytree(run[0], tmp_path / "run")
    return tmp_path / "run", tmp_path / "run/checkpoints/step-0000002"


def _assert_one_clear_line(message: str, file) -> None:
    assert str(file) in message and "\n" not in message
    assert "weights_only" not in message and "False" not in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"step": Payload()}, "holds objects that safe loading refuses"),  # UnpicklingError
        (b"\x00not a torch file", "is not a readable torch file"),
        ({"step": 2}, "is not an efm training state"),
    ],
)
def test_a_damaged_state_pt_is_one_line_on_resume(
    run, tmp_path, capsys, monkeypatch, content, reason
):
    """A tampered state.pt ended in an UnpicklingError traceback that suggested
    weights_only=False; resuming from it is now an EfmError naming the file (exit 2 in the CLI)."""
    run_dir, step = _copy_run(run, tmp_path)
    state = step / "state.pt"
    if isinstance(content, bytes):
        state.write_bytes(content)
    else:
        torch.save(content, state)
    cfg = tiny_config(run_dir, steps=4, ckpt_every=2, log_every=1, figures=False)
    with pytest.raises(EfmError) as info:
        pretrain(cfg, run[1])
    assert reason in str(info.value)
    _assert_one_clear_line(str(info.value), state)
    assert info.value.__cause__ is None  # torch's advice is not chained into the message

    # through the CLI (a subcommand whose work resumes from it): that line, no traceback, exit 2
    import efm.evaluate.run as evaluate_run

    monkeypatch.setattr(evaluate_run, "cli", lambda argv: ckpt.load(step, None, None))
    assert main(["probe"]) == 2
    assert capsys.readouterr().err == f"error: {info.value}\n"


def test_damaged_weights_are_one_line(run, tmp_path):
    _, step = _copy_run(run, tmp_path)
    weights = step / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    model = torch.nn.Linear(1, 1)
    with pytest.raises(EfmError, match="not a readable safetensors file") as info:
        ckpt.load_weights(step, model)
    _assert_one_clear_line(str(info.value), weights)


def test_saved_weights_record_and_check_the_architecture(tmp_path):
    """Hiera's q_pool changes no parameter: q_pool=3 weights loaded silently into q_pool=2."""
    kw = dict(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), input_size=(64, 64))
    three = torch.nn.ModuleDict({"backbone": Hiera(q_pool=3, **kw)})
    ckpt.save(tmp_path, 1, three, _NoOptim(), 0)
    path = tmp_path / "checkpoints/step-0000001"
    two = torch.nn.ModuleDict({"backbone": Hiera(q_pool=2, **kw)})
    with pytest.raises(EfmError, match=r"backbone\.q_pool=3 \(this model: 2\)"):
        ckpt.load_weights(path, two)
    again = torch.nn.ModuleDict({"backbone": Hiera(q_pool=3, **kw)})
    ckpt.load_weights(path, again)  # the same architecture loads
    torch.testing.assert_close(again.state_dict(), three.state_dict())
    # weights without the metadata (older efm, other tools) load on shapes alone
    save_file({k: v.contiguous() for k, v in three.state_dict().items()}, str(tmp_path / "w.st"))
    ckpt.load_weights(tmp_path / "w.st", two)


class _NoOptim:
    def state_dict(self):
        return {}


def test_pickle_module_is_what_torch_refuses():
    """The tampered file of the first test really is refused by safe loading (not by chance)."""
    import io

    buf = io.BytesIO()
    torch.save({"step": Payload()}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf, weights_only=True)
