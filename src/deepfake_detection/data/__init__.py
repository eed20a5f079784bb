"""Fake/Real image folders: discovery, decoding, transforms and the DataModule."""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Lazy, so that light commands (`audit`, `compare`) can use discovery without importing
# Lightning and torch, which takes seconds.
_EXPORTS = {
    "CLASS_LABELS": "deepfake_detection.data.discovery",
    "DatasetIndex": "deepfake_detection.data.discovery",
    "discover": "deepfake_detection.data.discovery",
    "DeepfakeDataModule": "deepfake_detection.data.datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
