"""The four interfaces of efm, and the data that flows between them.

``Reader`` turns a file into a :class:`Recording`; the pipeline (``efm.data``) cuts recordings into
epochs stored in shards; a ``Representation`` turns a batch of raw epochs ``[B, C, T]`` into model
inputs on the accelerator; a ``Backbone`` turns those into token features; an ``Objective`` composes a
backbone and a representation into a loss. Vocabulary follows MNE: ``sfreq`` (Hz), ``ch_names``,
``ch_types``, ``n_chans``, ``n_times``, ``ch_pos`` (metres); signals are in volts in a ``Recording``
and in microvolts in shards and batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is heavy; interfaces import it lazily
    import torch

CH_TYPES = ("eeg", "seeg", "ecog", "eog", "emg", "ecg", "misc")
MODALITIES = ("eeg", "ieeg")


@dataclass(frozen=True)
class Annotation:
    """One annotated event.

    Parameters
    ----------
    onset : float
        Seconds from the start of the recording.
    duration : float
        Seconds; 0 for an instant event.
    description : str
        The annotation text as written in the file (any language).
    annotator : str
        Who or what made it (a clinician's initials, ``"device"``, ``"efm.sleep"``); ``""`` if unknown.
    """

    onset: float
    duration: float
    description: str
    annotator: str = ""


@dataclass
class Recording:
    """A recording in memory, as a reader returns it.

    Parameters
    ----------
    data : ndarray, shape (n_chans, n_times), float32
        The signals in volts.
    sfreq : float
        Sampling frequency in Hz.
    ch_names : list of str
        Channel names as in the file.
    ch_types : list of str
        One of :data:`CH_TYPES` per channel.
    ch_pos : ndarray, shape (n_chans, 3) | None
        Electrode positions in metres (head or MNI frame); NaN rows where unknown.
    annotations : list of Annotation
        Events, sorted by onset.
    patient_id, recording_id : str
        Identifiers used for patient-level splits and for naming epochs.
    sha256 : str
        Hex digest of the source file (filled by the pipeline when empty).
    source : str
        Path of the source file.
    modality : str
        ``"eeg"`` or ``"ieeg"``.
    meas_date : float | None
        Start of the recording as a POSIX timestamp (UTC), if known.
    extra : dict
        Reader-specific metadata (electrode subtypes, device, units ...).
    """

    data: np.ndarray
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    ch_pos: np.ndarray | None = None
    annotations: list[Annotation] = field(default_factory=list)
    patient_id: str = ""
    recording_id: str = ""
    sha256: str = ""
    source: str = ""
    modality: str = "eeg"
    meas_date: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ValueError(
                f"Recording.data must be [n_chans, n_times], got shape {self.data.shape}"
            )
        n = self.data.shape[0]
        if len(self.ch_names) != n or len(self.ch_types) != n:
            raise ValueError(
                f"Recording has {n} channels of data but {len(self.ch_names)} names and "
                f"{len(self.ch_types)} types"
            )
        if self.ch_pos is not None and self.ch_pos.shape != (n, 3):
            raise ValueError(f"Recording.ch_pos must be [{n}, 3], got {self.ch_pos.shape}")

    @property
    def n_chans(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_times(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_times / self.sfreq


@runtime_checkable
class Reader(Protocol):
    """Reads one recording file.

    Attributes
    ----------
    name : str
        Registered name.
    extensions : tuple of str
        Lower-case file extensions it claims, with the dot (``(".edf", ".bdf")``).

    Methods
    -------
    read(path) -> Recording
        Read the whole file; raise :class:`efm.errors.ReaderError` with the reason when it cannot.
    """

    name: str
    extensions: tuple[str, ...]

    def read(self, path: str | Path) -> Recording: ...


@dataclass
class Tokens:
    """The output of a token-family representation (DIVER-1 / MOIRAI style).

    Parameters
    ----------
    patches : Tensor, shape (B, C, N, P)
        Non-overlapping patches of ``P`` samples; ``N`` patches per channel.
    channel_mask : Tensor, shape (B, C), bool
        True for real channels, False for padding (recordings with fewer channels).
    ch_type : Tensor, shape (B, C), long
        Index into :data:`CH_TYPES`.
    ch_pos : Tensor, shape (B, C, 3)
        Positions in metres, NaN where unknown.
    modality : Tensor, shape (B,), long
        Index into :data:`MODALITIES`.
    subtype : Tensor, shape (B, C), long
        Electrode subtype (0 unknown, 1 grid, 2 strip, 3 depth).
    sfreq : float
        Sampling frequency of the signal the patches were cut from.
    """

    patches: torch.Tensor
    channel_mask: torch.Tensor
    ch_type: torch.Tensor
    ch_pos: torch.Tensor
    modality: torch.Tensor
    subtype: torch.Tensor
    sfreq: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.patches.shape)


@runtime_checkable
class Representation(Protocol):
    """An ``nn.Module`` from raw epochs to model inputs, run on the accelerator per batch.

    Attributes
    ----------
    family : str
        ``"image"`` (output ``[B, C, H, W]`` or ``[B, n_repr, C, H, W]``) or ``"token"`` (output
        :class:`Tokens`).

    Methods
    -------
    forward(x, *, meta=None, channel_mask=None)
        ``x``: Tensor ``[B, C, T]`` in µV at ``sfreq``; fp32, bf16 or fp16 accepted; image outputs come
        back in the input's dtype. ``meta``: the batch's per-sample shard metadata (a list of dicts)
        or None; ``channel_mask``: bool ``[B, C]`` (True = a real channel) or None. A representation
        that has no use for them ignores them. Objectives and evaluation call it only this way
        (:func:`represent`).
    output_shape(n_chans, n_times) -> tuple
        The shape of one sample's output, without the batch dimension, without computing it
        (``[C, H, W]``, ``[n_repr, C, H, W]``, or ``[C, N, P]`` patches for tokens). The assembly
        (:mod:`efm.assemble`) builds the backbone from it.

    Options named ``sfreq`` and ``n_times`` in a representation's schema are derived from the
    pipeline by :mod:`efm.assemble` when left at None.
    """

    family: ClassVar[str]

    def __call__(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: torch.Tensor | None = None
    ) -> Any: ...

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]: ...


def represent(representation: Any, batch: dict[str, Any]) -> Any:
    """The one representation call: ``representation(batch["signal"], meta=..., channel_mask=...)``.

    ``meta`` and ``channel_mask`` are taken from the batch when present (else None).
    """
    return representation(
        batch["signal"], meta=batch.get("meta") or None, channel_mask=batch.get("channel_mask")
    )


@dataclass
class BackboneOutput:
    """What a backbone returns.

    Parameters
    ----------
    features : Tensor, shape (B, L, D)
        Final token features (only visible tokens when a mask was given to a dropping backbone).
    intermediates : list of Tensor
        Per-stage or per-layer features, for decoders that fuse scales (Hiera-MAE).
    extra : dict
        Backbone-specific outputs (e.g. the token grid shape).
    """

    features: torch.Tensor
    intermediates: list[torch.Tensor] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backbone(Protocol):
    """An ``nn.Module`` from a representation's output to token features.

    Attributes
    ----------
    embed_dim : int
        Width ``D`` of :meth:`embed`'s output.
    accepts : tuple of str
        Representation families it takes (``("image",)``, ``("token",)``).

    Methods
    -------
    forward(x, mask=None) -> BackboneOutput
        ``mask``: bool Tensor on the backbone's mask grid (see :meth:`mask_shape`), True = visible.
    embed(x) -> Tensor (B, D)
        Pooled features for probes.
    mask_shape(x) -> tuple of int
        Shape of one sample's mask grid for input ``x``.
    example_input(batch_size) -> input
        A random input of the shape the backbone was built for (tests, FLOP counts).

    Options derived from the representation by :mod:`efm.assemble` when left at None: ``in_chans``
    and ``input_size`` (image family), ``patch_len`` and ``embed_window`` (token family).
    """

    embed_dim: int
    accepts: tuple[str, ...]

    def __call__(self, x: Any, mask: torch.Tensor | None = None) -> BackboneOutput: ...

    def embed(self, x: Any) -> torch.Tensor: ...

    def mask_shape(self, x: Any) -> tuple[int, ...]: ...

    def example_input(self, batch_size: int) -> Any: ...


@runtime_checkable
class SupportsParamGroups(Protocol):
    """Optional capability of any component: which optimizer updates each of its parameters.

    ``param_groups()`` maps names of the module's parameters (as its ``named_parameters()`` gives
    them) to ``"muon"`` (hidden 2-D weight matrices) or ``"adamw"`` (input and output layers,
    embeddings, norms, biases, tokens, convolutions). The training loop's optimizer split
    (:mod:`efm.train.optim`) follows the declaration of the outermost component that names a
    parameter; parameters no component declares follow core's default rule.
    """

    def param_groups(self) -> dict[str, str]: ...


@runtime_checkable
class SupportsActivationCheckpointing(Protocol):
    """Optional capability of a backbone: recompute its blocks in the backward pass (less memory).

    ``train.activation_checkpointing=true`` calls it on the objective's backbone; a backbone without
    it trains as usual, with a warning.
    """

    def set_activation_checkpointing(self, enabled: bool = True) -> None: ...


@runtime_checkable
class SupportsUnusedParameters(Protocol):
    """Optional capability of any component: parameters its training forward never uses.

    ``unused_parameters()`` names them (relative to the component, as its ``named_parameters()``
    gives them), e.g. an objective that reads its backbone's intermediates and never its final
    norm. The training loop freezes them before building the optimizers, so that DDP, which needs
    a gradient for every trainable parameter at every step, runs (``efm.train.distributed``). The
    conformance check ``efm.testing.ddp`` holds a declaration to what a backward pass shows.
    """

    def unused_parameters(self) -> set[str]: ...


@dataclass
class ObjectiveOutput:
    """What an objective's forward returns.

    Parameters
    ----------
    loss : Tensor, scalar
        The loss to minimise.
    logs : dict of str to float
        Named scalars for the metrics file (detached).
    figures : dict of str to Tensor | None
        Optional ``original`` / ``masked`` / ``reconstruction`` images for reconstruction figures,
        and ``hidden`` (bool, the same shape): what the objective masked, drawn over ``masked``.
    """

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    figures: dict[str, torch.Tensor] | None = None


@runtime_checkable
class Objective(Protocol):
    """An ``nn.Module`` built from a backbone and a representation (composition, not inheritance).

    Builders are called as ``builder(backbone=..., representation=..., **config)``.

    Methods
    -------
    forward(batch) -> ObjectiveOutput
        ``batch["signal"]``: Tensor ``[B, C, T]`` in µV; other keys carry per-sample metadata.
    """

    backbone: Any
    representation: Any

    def __call__(self, batch: dict[str, Any]) -> ObjectiveOutput: ...
