"""Detectors: one LightningModule per architecture, all implementing `BaseDetector`, found by
name in the registry (`models.registry`); each architecture is a module of
`models/architectures/` that registers itself.

Exports load on first use, so that the registry's names can be read (`compare`) without
importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BaseDetector": "deepfake_detection.models.base",
    # The built-in detectors; their configs' `_target_` name them here.
    "CustomCNNDetector": "deepfake_detection.models.architectures.custom_cnn",
    "MobileNetV2Detector": "deepfake_detection.models.architectures.mobilenet_v2",
    "TimmDetector": "deepfake_detection.models.architectures.timm_models",
    "ClipDetector": "deepfake_detection.models.architectures.clip_models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
