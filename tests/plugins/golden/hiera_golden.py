"""Generate ``hiera2d.safetensors`` / ``hiera3d.safetensors`` with the upstream Hiera (run outside efm).

Not part of the test-suite: it needs a checkout of facebookresearch/hiera and timm, neither of which
efm depends on. See ``hiera_README.md`` for the exact commands.

    PYTHONPATH=<timm site>:<hiera checkout> python hiera_golden.py OUT_DIR COMMIT
"""

import importlib.abc
import importlib.machinery
import json
import sys
import types

import torch
from safetensors.torch import save_file


# timm imports torchvision at module level; the reference Hiera only uses timm's DropPath and Mlp,
# which do not touch it, so a stand-in module is enough on a CPU-only torch without torchvision.
class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Meta(name, (cls,), {})
        setattr(cls, name, sub)
        return sub


class _Any(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Meta(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Any(spec.name)

    def exec_module(self, module):
        module.__path__ = []


sys.meta_path.insert(0, _Finder())

from hiera.hiera import Hiera  # noqa: E402
from hiera.hiera_mae import MaskedAutoencoderHiera  # noqa: E402

SIZE = {"embed_dim": 8, "num_heads": 1, "stages": (1, 1, 2, 1)}
DECODER = {"decoder_embed_dim": 16, "decoder_depth": 2, "decoder_num_heads": 2}
CASES = {
    "hiera2d": {"input_size": (64, 96), "in_chans": 3},
    "hiera3d": {
        "input_size": (3, 64, 64),
        "in_chans": 2,
        "q_stride": (1, 2, 2),
        "mask_unit_size": (1, 8, 8),
        "patch_kernel": (1, 7, 7),
        "patch_stride": (1, 4, 4),
        "patch_padding": (0, 3, 3),
        "sep_pos_embed": True,
    },
}


def randomise(model, gen):
    """Redraw every parameter so that no weight sits at a trivial value (zero bias, unit norm)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if p.ndim <= 1 else p[0].numel() ** -0.5
            shift = 1.0 if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")) else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * scale + shift)


def main(out_dir, commit):
    for case, cfg in CASES.items():
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1234)
        # MAE model (q_pool=2, as pretrained) holds the encoder and decoder weights
        mae = MaskedAutoencoderHiera(q_pool=2, **SIZE, **DECODER, **cfg).eval()
        randomise(mae, gen)
        # classifier (q_pool=3, the reference classification setting) on the same encoder weights
        cls = Hiera(q_pool=3, num_classes=5, **SIZE, **cfg).eval()
        randomise(cls, gen)
        missing, _ = cls.load_state_dict(mae.state_dict(), strict=False)
        assert set(missing) == {
            "norm.weight",
            "norm.bias",
            "head.projection.weight",
            "head.projection.bias",
        }, missing

        b = 2
        x = torch.randn(b, cfg["in_chans"], *cfg["input_size"], generator=gen)
        n_units = len(cls.get_random_mask(x, 0.0)[0])
        keep = max(1, int(n_units * 0.4))
        ids = torch.rand(b, n_units, generator=gen).argsort(dim=1)[:, :keep]
        mask = torch.zeros(b, n_units, dtype=torch.bool).scatter_(1, ids, True)
        with torch.no_grad():
            probs, inter = cls(x, return_intermediates=True)  # eval mode: softmax probabilities
            _, inter_m = cls(x, mask=mask, return_intermediates=True)
            loss, pred, label, _ = mae(x, mask=mask)

        tensors = {
            "input": x,
            "mask": mask,
            "cls.probs": probs,
            "mae.loss": loss.reshape(1),
            "mae.pred": pred,
            "mae.label": label,
        }
        tensors |= {f"cls.inter.{i}": t for i, t in enumerate(inter)}
        tensors |= {f"cls.masked_inter.{i}": t for i, t in enumerate(inter_m)}
        tensors |= {
            f"weights.cls.{k}": v
            for k, v in cls.state_dict().items()
            if k.startswith(("norm.", "head."))
        }
        tensors |= {f"weights.mae.{k}": v for k, v in mae.state_dict().items()}
        meta = {
            "source": "https://github.com/facebookresearch/hiera",
            "commit": commit,
            "config": json.dumps(cfg),
            "size": json.dumps(SIZE),
            "decoder": json.dumps(DECODER),
            "cls_q_pool": "3",
            "mae_q_pool": "2",
            "torch": torch.__version__,
        }
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            f"{out_dir}/{case}.safetensors",
            metadata=meta,
        )
        print(case, "loss", float(loss))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
