"""The schema of ``RUN/eval/<task>/results.json`` (documented in ``docs/eval.md``) and its check.

The schema is written in a JSON-Schema-like form (``type``, ``required``, ``properties``,
``items``, ``additional``) and checked by :func:`problems` without a third-party validator.
"""

from __future__ import annotations

import math
from typing import Any

VERSION = "efm.eval/1"
METRIC_NAMES = ("balanced_accuracy", "kappa", "auroc", "auprc", "f1")

# a value that cannot be computed (AUROC with one class in a test fold, a 95 % interval from one
# seed) is written as null: JSON has no NaN, and strict parsers refuse it
_NUM = {"type": ["number", "null"]}
_SUMMARY = {
    "type": "object",
    "required": ["mean", "std", "ci95"],
    "properties": {k: _NUM for k in ("mean", "std", "ci95")},
}
_ROW = {
    "type": "object",
    "required": ["method", "mode"],
    "properties": {
        "method": {
            "type": "string",
            "enum": ["pretrained", "random-init", "bandpower-logreg", "eegnet"],
        },
        "mode": {"type": "string", "enum": ["linear", "finetune", "lora", "supervised"]},
        "skipped": {"type": "string"},
        "metrics": {
            "type": "object",
            "required": list(METRIC_NAMES),
            "properties": {k: _SUMMARY for k in METRIC_NAMES},
        },
        "per_seed": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["seed", "n_test", *METRIC_NAMES],
                "properties": {
                    "seed": {"type": "integer"},
                    "n_test": {"type": "integer"},
                    **{k: _NUM for k in METRIC_NAMES},
                },
            },
        },
        "per_subject": {"type": "object", "additional": _NUM},
        "confusion": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "curves": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["seed", "fold", "train_loss", "val_loss", "best_epoch"],
                "properties": {
                    "seed": {"type": "integer"},
                    "fold": {"type": "string"},
                    "val_loss_start": _NUM,
                    "train_loss": {"type": "array", "items": _NUM},
                    "val_loss": {"type": "array", "items": _NUM},
                    "val_balanced_accuracy": {"type": "array", "items": _NUM},
                    "best_epoch": {"type": "integer"},
                },
            },
        },
        "seconds": {"type": "number"},
        "flagged": {"type": "boolean"},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "schema",
        "task",
        "classes",
        "class_counts",
        "n_epochs",
        "n_subjects",
        "subjects",
        "split",
        "leakage",
        "rows",
        "best",
        "summary",
        "checkpoint",
        "recipe",
    ],  # fmt: skip
    "properties": {
        "schema": {"type": "string", "enum": [VERSION]},
        "task": {"type": "string"},
        "description": {"type": "string"},
        "classes": {"type": "array", "items": {"type": "string"}},
        "class_counts": {"type": "object", "additional": {"type": "integer"}},
        "n_epochs": {"type": "integer"},
        "n_subjects": {"type": "integer"},
        "subjects": {"type": "array", "items": {"type": "string"}},
        "epoch_s": {"type": "number"},
        "sfreq": {"type": "number"},
        "n_chans": {"type": "integer"},
        "split": {
            "type": "object",
            "required": ["protocol", "folds", "seeds", "validation", "test_subjects"],
            "properties": {
                "protocol": {"type": "string", "enum": ["kfold", "loso", "fixed"]},
                "folds": {"type": "integer"},
                "seeds": {"type": "integer"},
                "validation": {"type": "string"},
                "subject_rule": {"type": "string"},
                "test_subjects": {"type": "array", "items": {"type": "string"}},
            },
        },
        "leakage": {
            "type": "object",
            "required": ["folds_checked", "shared", "test_recordings", "test_in_pretraining"],
            "properties": {
                "folds_checked": {"type": "integer"},
                "shared": {"type": "object", "additional": {"type": "integer"}},
                "test_recordings": {"type": "integer"},
                "test_in_pretraining": {"type": "integer"},
                "test_in_pretraining_ids": {"type": "array", "items": {"type": "string"}},
                "pretraining_corpus_known": {"type": "boolean"},
            },
        },
        "checkpoint": {"type": ["string", "null"]},
        "recipe": {"type": ["string", "null"]},
        "pretraining": {"type": "object"},
        "rows": {"type": "array", "items": _ROW},
        "best": {
            "type": ["object", "null"],
            "required": ["method", "mode"],
            "properties": {"method": {"type": "string"}, "mode": {"type": "string"}},
        },
        "summary": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "skipped_files": {"type": "array", "items": {"type": "object"}},
        "efm_version": {"type": "string"},
        "created": {"type": "string"},
    },
}

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON's null), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy or torch scalar
        return finite(obj.item())
    return obj


def problems(obj: Any, schema: dict[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Every way ``obj`` departs from ``schema``, one line each (empty: valid)."""
    out: list[str] = []
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        ok = any(
            isinstance(obj, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(obj, bool))
            for t in allowed
        )
        if not ok:
            return [f"{path}: expected {' or '.join(allowed)}, got {type(obj).__name__}"]
    if obj is None:
        return out
    if "enum" in schema and obj not in schema["enum"]:
        out.append(f"{path}: {obj!r} not in {schema['enum']}")
    if isinstance(obj, dict):
        for key in schema.get("required", []):
            if key not in obj:
                out.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        for key, value in obj.items():
            sub = props.get(key, schema.get("additional"))
            if sub is not None:
                out += problems(value, sub, f"{path}.{key}")
    if isinstance(obj, list) and "items" in schema:
        for i, value in enumerate(obj):
            out += problems(value, schema["items"], f"{path}[{i}]")
    return out
