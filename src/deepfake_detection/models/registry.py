"""The registry of architectures: name → how the detector is built, its feature blocks, its
head, its Grad-CAM layer and its default weights.

Checkpoint loading builds only registered detectors (a checkpoint is untrusted input: its
`model._target_` must name one), `compare` names runs by it, export records its name and the
service asks it for the Grad-CAM layer. An architecture registers itself with `@register`:

    @register("tiny", settings=TinySettings)
    class TinyDetector(BaseDetector):
        ...

and its config, `conf/model/<name>.yaml`, names the class in `_target_`. This module imports
no torch: `compare` reads names without loading any model code.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deepfake_detection.rules import Rule, rules_of, value_at

if TYPE_CHECKING:
    from torch import nn

    from deepfake_detection.models.base import BaseDetector

#: The package path the built-in detectors are also importable from (`conf/model/*.yaml`
#: and checkpoints written so far name them so).
PACKAGE_TARGET = "deepfake_detection.models"
ROOT_PACKAGE = "deepfake_detection"


def last_feature_block(detector: BaseDetector) -> nn.Module:
    """Grad-CAM's usual layer for a CNN: the output of the last feature block."""
    return detector.feature_blocks()[-1]


@dataclass(frozen=True)
class Architecture:
    """One registered architecture."""

    #: Its name: `model=<name>` (conf/model/<name>.yaml), `model_name`, compare's column.
    name: str
    #: The `BaseDetector` subclass: its constructor builds the network from the `model.*`
    #: keys; its `feature_blocks` (what freeze strategies and the feature cache act on),
    #: `head_pool` and `head_rest` (the head) split the network.
    detector: type[BaseDetector]
    #: The dataclass of its `model.*` keys (`deepfake_detection.rules.setting` fields): a
    #: config is checked against it once, when the command starts. None: not checked.
    settings: type | None = None
    #: Where pretrained weights come from when none are given (None: trained from scratch).
    default_weights: str | None = None
    #: The layer Grad-CAM explains.
    gradcam_layer: Callable[[BaseDetector], nn.Module] = last_feature_block
    #: For a layer whose output is not a (N, C, H, W) map (a transformer's tokens), what
    #: turns it into one, given the detector; None: used as it is.
    gradcam_reshape: Callable[[BaseDetector], Callable | None] | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """The `_target_` values that build it: its own module's path, and for an architecture
        of this package also `deepfake_detection.models.<Class>` (what configs name)."""
        cls = self.detector
        own = f"{cls.__module__}.{cls.__qualname__}"
        return (own, f"{PACKAGE_TARGET}.{cls.__qualname__}") if self.built_in else (own,)

    @property
    def built_in(self) -> bool:
        return self.detector.__module__.startswith(f"{PACKAGE_TARGET}.")

    def builds(self, target: Any) -> bool:
        """Whether a config's `model._target_` names this architecture. A built-in one also
        answers to any path inside this package ending in its class name, as checkpoints
        written before its module moved name it (`deepfake_detection.models.mobilenet_v2.
        MobileNetV2Detector`)."""
        if target in self.targets:
            return True
        package, _, name = str(target).rpartition(".")
        return (
            self.built_in
            and package.startswith(ROOT_PACKAGE)
            and name == self.detector.__qualname__
        )


_REGISTRY: dict[str, Architecture] = {}


def register(
    name: str,
    *,
    settings: type | None = None,
    default_weights: str | None = None,
    gradcam_layer: Callable[[BaseDetector], nn.Module] = last_feature_block,
    gradcam_reshape: Callable[[BaseDetector], Callable | None] | None = None,
) -> Callable[[type[BaseDetector]], type[BaseDetector]]:
    """Class decorator: register a `BaseDetector` subclass as architecture `name`."""

    def decorate(cls: type[BaseDetector]) -> type[BaseDetector]:
        known = _REGISTRY.get(name)
        if known is not None and known.detector.__qualname__ != cls.__qualname__:
            raise ValueError(f"architecture {name!r} is registered already ({known.detector})")
        cls.model_name, cls.settings = name, settings
        _REGISTRY[name] = Architecture(
            name, cls, settings, default_weights, gradcam_layer, gradcam_reshape
        )
        return cls

    return decorate


@functools.cache
def _load_builtins() -> None:
    """Import every module of `models/architectures/` (once): each registers itself."""
    from deepfake_detection.models import architectures

    for module in pkgutil.iter_modules(architectures.__path__):
        importlib.import_module(f"{architectures.__name__}.{module.name}")


def architectures() -> dict[str, Architecture]:
    """Every registered architecture, by name (the built-in ones included)."""
    _load_builtins()
    return dict(_REGISTRY)


def get(name: str) -> Architecture:
    found = architectures().get(name)
    if found is None:
        raise KeyError(f"no architecture {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return found


def for_target(target: Any) -> Architecture | None:
    """The registered architecture a config's `model._target_` builds, or None."""
    return next((a for a in architectures().values() if a.builds(target)), None)


def of(detector: BaseDetector) -> Architecture:
    """The architecture of a built detector."""
    return get(detector.model_name)


def name_for_target(target: str, config_dir: Path | None = None) -> str:
    """The architecture name for a `model._target_`, without importing any model code: from
    the architectures registered in this process, else from the shipped configs
    (`conf/model/<name>.yaml` names its class), else the class name itself."""
    for architecture in _REGISTRY.values():
        if architecture.builds(target):
            return architecture.name
    if config_dir is not None:
        for path in sorted((config_dir / "model").glob("*.yaml")):
            try:
                node = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(node, dict) and node.get("_target_") == target:
                return path.stem
    return str(target).rsplit(".", 1)[-1]


def model_rules(cfg: Any) -> dict[str, Rule]:
    """`{"model.<key>": Rule}` of the architecture the config's `model._target_` selects;
    empty for an architecture without settings."""
    architecture = for_target(value_at(cfg, "model._target_"))
    if architecture is None or architecture.settings is None:
        return {}
    return rules_of(architecture.settings, "model")


def every_model_rule() -> dict[str, Rule]:
    """The `model.*` keys of every architecture, listed in one place (a config is checked
    against its own architecture's, `model_rules`)."""
    found: dict[str, Rule] = {}
    for architecture in architectures().values():
        if architecture.settings is not None:
            rules = rules_of(architecture.settings, "model")
            found.update({k: r for k, r in rules.items() if k not in found})
    return found
