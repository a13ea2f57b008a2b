"""Schema of the ``eval`` recipe node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FinetuneConfig:
    """Fine-tuning and LoRA (``eval.finetune``): AdamW with ``lr`` for the encoder (``lora_lr``
    for LoRA's adapters) and ``head_lr`` for the head, layer-wise decay ``layer_decay`` (1: none),
    linear warmup over ``warmup_frac`` of the steps then cosine, at most ``epochs`` passes over the
    training set (``max_steps_per_epoch`` caps one pass, 0: none), early stopping after ``patience``
    epochs without a lower validation loss (the best epoch's weights are kept); LoRA rank and
    alpha."""

    epochs: int = field(default=30, metadata={"ge": 1})
    batch_size: int = field(default=32, metadata={"ge": 1})
    # 1e-4: diver1-EEG fine-tuned on EEGMAT to 0.611 balanced accuracy, 0.595 at 3e-4 (docs/eval.md)
    lr: float = field(default=1e-4, metadata={"gt": 0})
    lora_lr: float = field(default=3e-4, metadata={"gt": 0})
    head_lr: float = field(default=3e-3, metadata={"gt": 0})
    weight_decay: float = field(default=0.05, metadata={"ge": 0})
    layer_decay: float = field(default=1.0, metadata={"gt": 0})
    warmup_frac: float = field(default=0.1, metadata={"ge": 0, "lt": 1})
    patience: int = field(default=6, metadata={"ge": 1})
    lora_rank: int = field(default=8, metadata={"ge": 1})
    lora_alpha: int = field(default=16, metadata={"ge": 1})
    lora_dropout: float = field(default=0.0, metadata={"ge": 0, "lt": 1})
    max_steps_per_epoch: int = field(default=0, metadata={"ge": 0})
    grad_clip: float = field(default=1.0, metadata={"ge": 0})


@dataclass
class EvalConfig:
    """Evaluation: probes of the pretraining corpus and downstream tasks (``efm eval``).

    ``tasks``: labels of the pretraining corpus to probe (``seizure``) and registered downstream
    tasks (``efm list tasks``) that ``efm run`` evaluates at its end. Corpus probes: ``seeds``
    patient-level splits with ``test_fraction`` of the patients held out; ``C`` is the inverse L2
    strength of the logistic regression (``probe``, the classifier of every linear row).
    ``batch_size`` is used to compute embeddings; ``max_epochs`` caps how many epochs are embedded
    (0: all).

    Downstream tasks: ``modes`` (``linear``, ``finetune``, ``lora``) of the pretrained encoder,
    ``baselines`` (``random-init``, ``bandpower-logreg``, ``eegnet``), ``split`` (``kfold`` with
    ``folds`` subject-level folds, ``loso``, ``fixed`` with ``test_subjects`` or ``test_root``)
    and ``seeds`` (the same splits for every row).
    """

    probe: Literal["logistic"] = "logistic"
    tasks: list[str] = field(default_factory=lambda: ["seizure"])
    test_fraction: float = field(default=0.3, metadata={"gt": 0, "lt": 1})
    seeds: int = field(default=3, metadata={"ge": 1})
    C: float = field(default=1.0, metadata={"gt": 0})
    batch_size: int = field(default=64, metadata={"ge": 1})
    max_epochs: int = field(default=0, metadata={"ge": 0})
    modes: list[str] = field(default_factory=lambda: ["linear", "finetune"])
    baselines: list[str] = field(
        default_factory=lambda: ["random-init", "bandpower-logreg", "eegnet"]
    )
    split: Literal["kfold", "loso", "fixed"] = "kfold"
    folds: int = field(default=5, metadata={"ge": 2})
    test_subjects: list[str] = field(default_factory=list)
    test_root: str | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
