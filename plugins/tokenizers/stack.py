"""Several image representations stacked for EPI-250k's 3D Hiera variant: ``[B, n_repr, C, H, W]``.

In the 3D layout (reference/architectures.md §1.5) the representations are Hiera's input channels
and the C regional channels are its "frames". Each member is a registered image tokenizer built
with its defaults, with ``sfreq`` and ``output_size`` shared.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from efm_plugins.tokenizers.config import RepresentationError


class Stack(nn.Module):
    """``[B, C, T]`` -> ``[B, n_repr, C, output_size, output_size]``.

    Parameters
    ----------
    names : list of str
        Registered image tokenizers with per-channel output (not ``wpli``, not ``bandpass``).
    sfreq : float
        Sampling frequency handed to members that take one.
    output_size : int
        Image side handed to every member.
    n_times : int
        Expected signal length, handed to members that precompute a plan for it.
    """

    family: ClassVar[str] = "image"

    def __init__(
        self,
        names=("spectrogram", "morlet", "temporal_matrix"),
        sfreq: float = 250.0,
        output_size: int = 224,
        n_times: int = 7500,
    ) -> None:
        super().__init__()
        from efm import registry

        if not names:
            raise RepresentationError("stack: give at least one representation name")
        members = []
        for name in names:  # construction only: a handful of modules
            comp = registry.get("tokenizers", name)
            if comp.name in ("wpli", "stack") or comp.meta.get("family", "image") != "image":
                raise RepresentationError(
                    f"stack: {name!r} cannot be stacked (per-channel image representations only)"
                )
            options = comp.defaults()  # the schema is the component's option list
            cfg = {
                k: v
                for k, v in (("sfreq", sfreq), ("output_size", output_size), ("n_times", n_times))
                if k in options
            }
            members.append(registry.create("tokenizers", name, **cfg))
        self.members = nn.ModuleList(members)
        self.names, self.size = list(names), output_size

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        return (len(self.members), n_chans, self.size, self.size)

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the image; ``meta`` and ``channel_mask`` are not used."""
        return torch.stack([m(x) for m in self.members], dim=1)  # [B, n_repr, C, H, W]
