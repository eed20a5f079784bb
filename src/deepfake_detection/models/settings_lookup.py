"""The `model.*` rules of the architecture a config selects (its `model._target_` class)."""

from __future__ import annotations

from omegaconf import DictConfig

from deepfake_detection.models.base import BaseDetector
from deepfake_detection.models.custom_cnn import CustomCNNDetector
from deepfake_detection.models.mobilenet_v2 import MobileNetV2Detector
from deepfake_detection.rules import Rule, rules_of, value_at

#: Class name -> detector class, for each architecture a config may name.
DETECTORS: dict[str, type[BaseDetector]] = {
    cls.__name__: cls for cls in (CustomCNNDetector, MobileNetV2Detector)
}


def model_rules(cfg: DictConfig) -> dict[str, Rule]:
    """`{"model.<key>": Rule}` of the architecture `model._target_` names; empty for a class
    this package does not know (its own constructor then checks its arguments)."""
    target = value_at(cfg, "model._target_")
    detector = DETECTORS.get(str(target).rpartition(".")[2]) if target else None
    if detector is None or detector.settings is None:
        return {}
    return rules_of(detector.settings, "model")


def every_model_rule() -> dict[str, Rule]:
    """The `model.*` keys of every architecture, for listing them all in one place (a config
    is checked against its own architecture's, `model_rules`)."""
    found: dict[str, Rule] = {}
    for detector in DETECTORS.values():
        if detector.settings is not None:
            found.update(
                {k: r for k, r in rules_of(detector.settings, "model").items() if k not in found}
            )
    return found
