"""The README's code examples run: the tokenizer plugin trains under a recipe, a checkpoint reloads."""

from __future__ import annotations

import re
import sys
import types

import torch

from efm import registry
from tests.conftest import ROOT


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_tokenizer_example_assembles_and_trains_a_step(monkeypatch):
    code = next(b for b in _python_blocks() if "efm_register_tokenizers" in b)
    module = types.ModuleType("readme_tokenizer")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    exec(compile(code, "README.md", "exec"), module.__dict__)
    reg = registry.get_registry()
    registered: list[tuple] = []
    module.efm_register_tokenizers(lambda *a, **kw: registered.append((a, kw)))
    (name, builder, schema), kw = registered[0]
    reg.register_callback("tokenizers", "readme", "readme")(name, builder, schema, **kw)

    from efm.assemble import assemble
    from efm.config import compose

    torch.manual_seed(0)
    objective = assemble(compose(["recipe=epi250k", f"representation={name}"]))
    out = objective({"signal": torch.randn(2, 8, 7500) * 30})
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert objective.representation.output_shape(8, 7500) == (8, 128, 128)
