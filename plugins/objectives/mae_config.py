"""Options of the ``mae`` objective (light module: no torch import, used by config validation)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MAEConfig:
    """Hiera-MAE: mask units, multi-scale fusion, a transformer decoder, normalised-pixel loss.

    ``mask_ratio``: fraction of mask units hidden from the encoder; None = 0.6 for 2D inputs and 0.9
    for 3D ones. The number kept is ``int(n_units * (1 - mask_ratio))``, equal for every sample.
    ``decoder_embed_dim``, ``decoder_depth``, ``decoder_num_heads``: the decoder (Hiera-MAE: 512, 8,
    16 for every encoder size). ``norm_pix_loss``: standardise each target patch with its own mean and
    unbiased variance. ``init_backbone``: apply the Hiera-MAE initialisation (xavier-uniform linear and
    convolution weights, zero biases, unit LayerNorms) to the backbone as well as to the decoder;
    turn it off to continue from pretrained backbone weights.
    """

    mask_ratio: float | None = None
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = True
    init_backbone: bool = True
