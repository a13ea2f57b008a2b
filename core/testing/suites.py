"""The shared conformance suites: one per plugin kind, parametrised over the names a subclass lists."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from efm import registry
from efm.errors import ReaderError
from efm.interfaces import CH_TYPES, BackboneOutput, ObjectiveOutput, Recording, Tokens


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


requires_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")


def synthetic_recording(
    n_chans: int = 4,
    sfreq: float = 250.0,
    seconds: float = 10.0,
    seed: int = 0,
    ch_names: list[str] | None = None,
) -> Recording:
    """A small random recording (volts) for tests."""
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((n_chans, int(sfreq * seconds))) * 20e-6).astype(np.float32)
    names = ch_names or [f"EEG{i:03d}" for i in range(n_chans)]
    return Recording(data, sfreq, names, ["eeg"] * n_chans, patient_id="p0", recording_id="r0")


class _Suite:
    names: ClassVar[list[str]] = []
    kind: ClassVar[str] = ""

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", list(self.names))

    def config(self, name: str) -> dict[str, Any]:
        """Options passed to the builder of ``name`` (override per plugin)."""
        return {}

    def build(self, name: str) -> Any:
        return registry.create(self.kind, name, **self.config(name))

    def test_registered(self, name: str) -> None:
        assert registry.get(self.kind, name).name == name


class ReaderSuite(_Suite):
    """Checks a reader on the files that :meth:`files` returns for it."""

    kind = "readers"

    def files(self, name: str) -> list[Path]:  # pragma: no cover - subclasses override
        raise NotImplementedError

    def test_reads_files(self, name: str) -> None:
        reader = self.build(name)
        paths = self.files(name)
        assert paths, f"no test files for reader {name!r}"
        for path in paths:
            assert Path(path).suffix.lower() in reader.extensions, path
            rec = reader.read(path)
            assert isinstance(rec, Recording)
            assert rec.data.dtype == np.float32 and rec.data.ndim == 2
            assert rec.n_times > 0 and rec.sfreq > 0
            assert len(rec.ch_names) == rec.n_chans == len(rec.ch_types)
            assert set(rec.ch_types) <= set(CH_TYPES), rec.ch_types
            assert np.isfinite(rec.data).all()
            # volts: the typical channel stays far below 1 V (trigger/DC channels may not)
            typical = float(np.median(np.abs(rec.data).max(axis=1)))
            assert typical < 1.0, f"signals must be in volts (median channel peak {typical:g})"
            onsets = [a.onset for a in rec.annotations]
            assert onsets == sorted(onsets)
            assert rec.source

    def test_garbage_raises_reader_error(self, name: str, tmp_path: Path) -> None:
        reader = self.build(name)
        for i, payload in enumerate([b"", b"not a recording at all" * 10]):
            bad = tmp_path / f"bad{i}{reader.extensions[0]}"
            bad.write_bytes(payload)
            with pytest.raises(ReaderError):
                reader.read(bad)

    def damaged_source(self, name: str) -> tuple[Path, int] | None:
        """A good file to damage and the byte span to corrupt in it (None: skip the check)."""
        return None

    def test_damaged_files_give_reader_error_or_a_recording(
        self, name: str, tmp_path: Path
    ) -> None:
        source = self.damaged_source(name)
        if source is None:
            pytest.skip(f"no damaged_source() for reader {name!r}")
        path, span = source
        good = Path(path).read_bytes()
        reader = self.build(name)
        rng = np.random.default_rng(1)
        for i in range(40):  # truncations and scattered byte flips, alternately
            b = bytearray(good)
            if i % 2:
                b = b[: int(rng.integers(0, len(b)))]
            else:
                for k in rng.integers(0, span, 20):
                    b[int(k)] = int(rng.integers(0, 256))
            bad = tmp_path / f"d{i}{Path(path).suffix}"
            bad.write_bytes(bytes(b))
            try:
                rec = reader.read(bad)
            except ReaderError:
                continue
            assert rec.n_times > 0 and np.isfinite(rec.data).all()

    def test_missing_file_raises_reader_error(self, name: str, tmp_path: Path) -> None:
        reader = self.build(name)
        with pytest.raises(ReaderError):
            reader.read(tmp_path / f"missing{reader.extensions[0]}")


class TokenizerSuite(_Suite):
    """Shapes, finiteness, batch independence and dtype round-trips of a representation.

    Each representation is built for the suite's data (``n_chans`` channels, ``seconds`` at
    ``sfreq``) the way :mod:`efm.assemble` builds it for a pipeline: ``sfreq`` and ``n_times`` are
    derived; :meth:`config` gives any other options.
    """

    kind = "tokenizers"
    n_chans: ClassVar[int] = 4
    seconds: ClassVar[float] = 4.0
    sfreq: ClassVar[float] = 250.0

    def signal(self, batch: int = 2, seed: int = 0) -> Any:
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch, self.n_chans, int(self.sfreq * self.seconds), generator=g) * 30.0

    def build(self, name: str) -> Any:
        """Built by the assembly's derivation for the suite's data: ``sfreq``, ``n_times`` derived."""
        from efm.assemble import DataSpec, plan
        from efm.errors import ConfigError

        n_times = int(self.sfreq * self.seconds)
        data = DataSpec(sfreq=self.sfreq, n_times=n_times, n_chans=self.n_chans)
        p, rep = plan({"representation": {"name": name, **self.config(name)}}, data)
        if p.problems:
            raise ConfigError(p.problems)
        return rep

    @staticmethod
    def _main(out: Any) -> Any:
        return out.patches if isinstance(out, Tokens) else out

    def test_shape_and_finite(self, name: str) -> None:
        import torch

        rep = self.build(name)
        x = self.signal()
        with torch.no_grad():
            out = self._main(rep(x))
        assert tuple(out.shape) == (x.shape[0], *rep.output_shape(x.shape[1], x.shape[2]))
        assert torch.isfinite(out).all()

    def test_batch_independence(self, name: str) -> None:
        import torch

        rep = self.build(name)
        x = self.signal(batch=3)
        with torch.no_grad():
            full = self._main(rep(x))
            one = self._main(rep(x[1:2]))
        torch.testing.assert_close(full[1:2], one, rtol=1e-4, atol=1e-4)

    def test_half_precision_round_trip(self, name: str) -> None:
        import torch

        rep = self.build(name)
        x = self.signal()
        with torch.no_grad():
            ref = self._main(rep(x)).float()
            for dtype in (torch.bfloat16, torch.float16):
                out = self._main(rep(x.to(dtype)))
                if rep.family == "image":
                    assert out.dtype == dtype
                assert torch.isfinite(out.float()).all()
                err = (out.float() - ref).abs().mean() / (ref.abs().mean() + 1e-6)
                assert err < 0.05, f"{dtype}: mean relative error {err:.3f}"


class BackboneSuite(_Suite):
    """Forward shapes, embeddings, gradients, determinism and a safetensors round-trip."""

    kind = "backbones"
    batch_size: ClassVar[int] = 2

    def example(self, model: Any, name: str) -> Any:
        """An input batch for ``model`` (its ``example_input`` by default)."""
        return model.example_input(self.batch_size)

    def test_forward(self, name: str) -> None:
        import torch

        torch.manual_seed(0)
        model = self.build(name).eval()
        x = self.example(model, name)
        with torch.no_grad():
            out = model(x)
            emb = model.embed(x)
        assert isinstance(out, BackboneOutput)
        assert out.features.ndim == 3 and out.features.shape[0] == self.batch_size
        assert out.features.shape[-1] > 0 and torch.isfinite(out.features).all()
        assert tuple(emb.shape) == (self.batch_size, model.embed_dim)
        assert set(model.accepts) <= {"image", "token"}

    def test_mask_all_visible(self, name: str) -> None:
        import torch

        model = self.build(name).eval()
        x = self.example(model, name)
        mask = torch.ones(self.batch_size, *model.mask_shape(x), dtype=torch.bool)
        with torch.no_grad():
            out = model(x, mask=mask)
        assert torch.isfinite(out.features).all()

    def test_backward(self, name: str) -> None:
        model = self.build(name).train()
        x = self.example(model, name)
        model(x).features.float().pow(2).mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)

    def test_deterministic_under_seed(self, name: str) -> None:
        import torch

        torch.manual_seed(1)
        a = self.build(name).eval()
        torch.manual_seed(1)
        b = self.build(name).eval()
        x = self.example(a, name)
        with torch.no_grad():
            torch.testing.assert_close(a(x).features, b(x).features)

    def test_safetensors_round_trip(self, name: str) -> None:
        import torch
        from safetensors.torch import load, save

        torch.manual_seed(2)
        a = self.build(name).eval()
        torch.manual_seed(3)
        b = self.build(name).eval()
        b.load_state_dict(load(save({k: v.contiguous() for k, v in a.state_dict().items()})))
        x = self.example(a, name)
        with torch.no_grad():
            torch.testing.assert_close(a(x).features, b(x).features)


class ObjectiveSuite(_Suite):
    """An objective over a backbone and a representation: finite loss, gradients, loss goes down.

    Every objective is built by :func:`efm.assemble.assemble`, as training builds it: from the
    representation and backbone of the first registered recipe that names the objective (its demo
    profile, the backbone's ``*_test`` size), at the suite's data shape (``n_chans`` channels,
    ``seconds`` at ``sfreq``). Whatever the backbone needs from the representation is derived.
    Override :meth:`nodes` to change those recipe nodes, :meth:`config` for the objective's options.
    """

    kind = "objectives"
    n_chans: ClassVar[int] = 8
    seconds: ClassVar[float] = 4.0
    sfreq: ClassVar[float] = 250.0

    def nodes(self, name: str) -> dict[str, dict[str, Any]]:
        """``{"representation": {...}, "backbone": {...}}`` to assemble objective ``name`` with."""
        from efm.config import compose, recipe_mapping

        reg = registry.get_registry()
        for recipe in reg.tables["recipes"]:
            if (recipe_mapping(recipe)[1].get("objective") or {}).get("name") == name:
                cfg = compose([f"recipe={recipe}"])
                backbone = dict(cfg["backbone"])
                test = backbone["name"].rsplit("_", 1)[0] + "_test"
                if test in reg.tables["backbones"]:
                    backbone = {"name": test}
                return {"representation": dict(cfg["representation"]), "backbone": backbone}
        pytest.fail(f"no registered recipe names objective {name!r}: override nodes()")

    def data(self) -> Any:
        """The suite's data shape (:class:`efm.assemble.DataSpec`)."""
        from efm.assemble import DataSpec

        n_times = int(self.sfreq * self.seconds)
        return DataSpec(sfreq=self.sfreq, n_times=n_times, n_chans=self.n_chans)

    def build(self, name: str) -> Any:
        from efm.assemble import assemble

        cfg = {**self.nodes(name), "objective": {"name": name, **self.config(name)}}
        return assemble(cfg, self.data())

    def batch(self, seed: int = 0) -> dict[str, Any]:
        import torch

        g = torch.Generator().manual_seed(seed)
        x = torch.randn(4, self.n_chans, int(self.sfreq * self.seconds), generator=g) * 30.0
        return {"signal": x}

    def test_loss(self, name: str) -> None:
        import torch

        torch.manual_seed(0)
        obj = self.build(name)
        out = obj(self.batch())
        assert isinstance(out, ObjectiveOutput)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert all(isinstance(v, float) for v in out.logs.values())
        out.loss.backward()
        assert any(p.grad is not None for p in obj.parameters())

    def test_loss_goes_down(self, name: str) -> None:
        import torch

        torch.manual_seed(0)
        obj = self.build(name)
        opt = torch.optim.AdamW(obj.parameters(), lr=2e-3)
        batch = self.batch()
        losses = []
        for step in range(30):
            torch.manual_seed(step % 3)  # the same few masks, so the loss can go down
            loss = obj(batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses

    def test_ddp_step(self, name: str) -> None:
        """Two optimizer steps as 2 gloo processes under DDP (efm.testing.ddp): every trainable
        parameter gets a gradient, declared unused parameters are truly unused, replicas agree."""
        from efm.testing.ddp import check_distributed

        cfg = {**self.nodes(name), "objective": {"name": name, **self.config(name)}}
        problems = check_distributed(cfg, self.data(), setup=self.ddp_setup())
        assert not problems, "\n".join(problems)

    def ddp_setup(self) -> Any:
        """A module-level function each DDP test process calls first (None: nothing to set up)."""
        return None

    def test_state_dict_bytes(self, name: str) -> None:
        import torch

        obj = self.build(name)
        buf = io.BytesIO()
        torch.save(obj.state_dict(), buf)
        assert buf.tell() > 0
