"""Defaults written once: a component's options live in its schema, and the builder passes them on.

For every registered representation, backbone and objective with a lazy builder: when the target is
a class, its constructor's options are exactly the schema's fields, with the same defaults (except
options the assembly derives, which are None in the schema and the standalone value in the class);
when the target is a function that builds from the schema (``Moirai(MoiraiConfig(**cfg))``), the
built object's ``cfg`` holds exactly the options it was given.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, is_dataclass

import pytest

from efm import registry
from efm.registry import Lazy

SKIP = {"self", "backbone", "representation"}


def _plain(v):
    """Tuples as lists, recursively (OmegaConf gives lists for tuple defaults)."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _components() -> list[registry.Component]:
    reg = registry.get_registry()
    return [
        c
        for kind in ("tokenizers", "backbones", "objectives")
        for c in reg.tables[kind].values()
        if c.distribution == "efm" and c.plugin != "recipes"
    ]


def test_every_built_in_registers_a_schema_and_a_lazy_builder() -> None:
    comps = _components()
    assert len(comps) >= 7 + 7 + 2
    bad = [c.name for c in comps if c.schema is None or not isinstance(c.builder, Lazy)]
    assert bad == []


@pytest.mark.parametrize("comp", _components(), ids=lambda c: f"{c.kind}:{c.name}")
def test_schema_defaults_are_the_builders_defaults(comp: registry.Component) -> None:
    target = comp.builder.resolve()
    defaults = comp.defaults()
    if isinstance(target, type):
        params = {
            n: p
            for n, p in inspect.signature(target.__init__).parameters.items()
            if n not in SKIP and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        assert set(params) == set(defaults), f"{comp.name}: options differ from {target}"
        for name, p in params.items():
            if name in getattr(comp.schema, "size_numbers", {}):
                continue  # a size's own number (efm.registry.sized), checked below
            if name in comp.builder.derived and defaults[name] is None:
                continue  # derived by efm.assemble; the class keeps its standalone value
            want, got = _plain(p.default), _plain(defaults[name])
            assert got == want, f"{comp.name}.{name}: schema {got!r} vs constructor {want!r}"
    else:
        sig = inspect.signature(target)
        kw = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
        assert kw, f"{target} must take the schema's options as keywords"
        if comp.kind != "backbones":
            pytest.skip("built with a backbone: covered by the recipes' assembly")
        built = target(**defaults)
        assert is_dataclass(built.cfg)
        diff = {
            k: (v, defaults[k])
            for k, v in _plain(asdict(built.cfg)).items()
            if v != _plain(defaults[k]) and defaults[k] is not None  # None = derived
        }
        assert diff == {}


def test_sized_schemas_carry_each_sizes_numbers() -> None:
    base = registry.get("backbones", "hiera_base").defaults()
    huge = registry.get("backbones", "hiera_huge").defaults()
    assert (base["embed_dim"], _plain(base["stages"])) == (96, [2, 3, 16, 3])
    assert (huge["embed_dim"], huge["num_heads"]) == (256, 4)
    from efm_plugins.backbones import hiera

    assert len(hiera.hiera_small().blocks) == 1 + 2 + 11 + 2  # the Python API, same table
    model = registry.create("backbones", "hiera_test", embed_dim=32)  # a size's number, overridden
    assert model.patch_embed.proj.out_channels == 32
    assert registry.get("backbones", "moirai_base").defaults()["d_model"] == 768
