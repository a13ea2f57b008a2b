"""The hooks a plugin implements. Their docstrings are the plugin author's reference.

A plugin is a module (or object) with functions decorated by ``efm.hookimpl`` whose names are the hooks
below, and is announced to efm through the ``efm`` entry-point group of its distribution::

    [project.entry-points.efm]
    my_plugin = "my_package.efm_plugin"

Every hook receives one argument, ``register``, a callable owned by efm's core: naming, aliases and
duplicate detection live there, so two plugins that register the same name fail at start-up with a
:class:`efm.errors.PluginError` naming both distributions. Keep plugin modules cheap to import: import
torch or optional libraries inside the builders, not at module level.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("efm")
hookimpl = pluggy.HookimplMarker("efm")


@hookspec
def efm_register_readers(register: Any) -> None:
    """Register readers.

    Call ``register(name, builder, schema=None, extensions=(), aliases=())``: ``builder(**config)``
    returns an object with ``read(path) -> Recording`` (see :class:`efm.interfaces.Reader`);
    ``extensions`` are the lower-case suffixes it claims (``(".trc",)``).

    Example::

        @efm.hookimpl
        def efm_register_readers(register):
            register("micromed", build_micromed, MicromedConfig, extensions=(".trc",))
    """


@hookspec
def efm_register_tokenizers(register: Any) -> None:
    """Register representations (tokenizers).

    Call ``register(name, builder, schema=None, family="image", aliases=())``: ``builder(**config)``
    returns an ``nn.Module`` following :class:`efm.interfaces.Representation`; ``family`` is ``"image"``
    or ``"token"`` and is checked against the backbone's ``accepts`` during validation. Schema fields
    named ``sfreq`` and ``n_times`` (default None) are derived from the pipeline by
    :mod:`efm.assemble`; the module states its output through ``output_shape(n_chans, n_times)``.
    """


@hookspec
def efm_register_backbones(register: Any) -> None:
    """Register backbones.

    Call ``register(name, builder, schema=None, accepts=("image",), aliases=())``: ``builder(**config)``
    returns an ``nn.Module`` following :class:`efm.interfaces.Backbone`. Register every size as its own
    name (``hiera_base``, ``hiera_small``) with a builder that only sets numbers, plus a tiny ``*_test``.
    Schema fields named ``in_chans`` / ``input_size`` (image) or ``patch_len`` / ``embed_window``
    (token), default None, are derived from the representation's output by :mod:`efm.assemble`.
    """


@hookspec
def efm_register_objectives(register: Any) -> None:
    """Register objectives.

    Call ``register(name, builder, schema=None, aliases=())``: ``builder(backbone=..., representation=...,
    **config)`` returns an ``nn.Module`` following :class:`efm.interfaces.Objective`.
    """


@hookspec
def efm_register_recipes(register: Any) -> None:
    """Register recipes.

    Call ``register(name, recipe, aliases=(), description="")`` where ``recipe`` is a mapping, or a path
    to a YAML file, with the nodes ``reader``, ``pipeline``, ``representation``, ``backbone``,
    ``objective``, ``optim``, ``train``, ``eval`` and ``data``; components are named by their registered
    names (``backbone: {name: hiera_base, drop_path_rate: 0.1}``).
    """


@hookspec
def efm_register_tasks(register: Any) -> None:
    """Register downstream evaluation tasks (``efm eval task=NAME``, ``efm list tasks``).

    Call ``register(name, task, aliases=(), description="")`` where ``task`` is an
    :class:`efm.evaluate.task.Task` (or a mapping of its fields): where the recordings are, how
    epochs get labels (file names, annotations, BIDS ``events.tsv``, a CSV sidecar), the epoch
    length, how subjects are identified, the split protocol and the channel picks. Test it with
    :class:`efm.testing.TaskSuite`.

    Example::

        @efm.hookimpl
        def efm_register_tasks(register):
            register("my-imagery", Task(labels="annotations", classes=["rest", "move"],
                     label_map={"T0": "rest", "T1": "move"}, epoch_s=4.0, epochs="events"))
    """
