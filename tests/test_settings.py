"""Typed settings: each group's dataclass mirrors its shipped YAML, and its fields' rules are
the ones the command's table checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.auditing.settings import AuditDataSettings, AuditOptions, AuditRootSettings
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.data.augment import AugmentSettings
from deepfake_detection.data.settings import DataSettings, ScoringDataSettings
from deepfake_detection.detector.settings import CPUDeviceSettings, DetectorSettings, DeviceSettings
from deepfake_detection.evaluation.settings import (
    PerturbSettings,
    RobustnessSettings,
    SplitSettings,
)
from deepfake_detection.exporting.settings import ExportSettings, ParitySettings
from deepfake_detection.models.architectures.custom_cnn import CustomCNNDetector, CustomCNNSettings
from deepfake_detection.models.architectures.mobilenet_v2 import (
    MobileNetV2Detector,
    MobileNetV2Settings,
)
from deepfake_detection.models.freeze import FreezeSettings
from deepfake_detection.models.registry import model_rules
from deepfake_detection.prediction.settings import PredictSettings
from deepfake_detection.rules import Rule, number, rules_of, setting
from deepfake_detection.serving.settings import LimitSettings, ServeSettings
from deepfake_detection.training.settings import (
    CheckpointCallbackSettings,
    EarlyStoppingSettings,
    LoggerSettings,
    OptimizerSettings,
    ProgressSettings,
    SchedulerSettings,
    TrainerSettings,
    TrainSettings,
)

#: (settings class, entry config, overrides, where its keys sit in that config).
MIRRORS: list[tuple[type, str, list[str], str]] = [
    (TrainSettings, "train", [], ""),
    (DataSettings, "train", [], "data"),
    (AugmentSettings, "train", [], "augment"),
    (CustomCNNSettings, "train", [], "model"),
    (MobileNetV2Settings, "train", ["model=mobilenet_v2"], "model"),
    (FreezeSettings, "train", [], "freeze"),
    (OptimizerSettings, "train", [], "optimizer"),
    (SchedulerSettings, "train", ["scheduler=cosine"], "scheduler"),
    (SchedulerSettings, "train", ["scheduler=step"], "scheduler"),
    (SchedulerSettings, "train", ["scheduler=plateau"], "scheduler"),
    (EarlyStoppingSettings, "train", [], "early_stopping"),
    (CheckpointCallbackSettings, "train", [], "checkpoint"),
    (TrainerSettings, "train", [], "trainer"),
    (LoggerSettings, "train", [], "logger"),
    (ProgressSettings, "train", [], "progress"),
    (DetectorSettings, "evaluate", [], ""),
    (SplitSettings, "evaluate", [], "data"),
    (ScoringDataSettings, "evaluate", [], "data"),
    (PerturbSettings, "evaluate", [], "perturb"),
    (DeviceSettings, "evaluate", [], "trainer"),
    (RobustnessSettings, "robustness", [], ""),
    (PredictSettings, "predict", [], ""),
    (DeviceSettings, "predict", [], "trainer"),
    (ExportSettings, "export", [], ""),
    (ParitySettings, "export", [], "parity"),
    (CPUDeviceSettings, "export", [], "trainer"),
    (ServeSettings, "serve", [], ""),
    (LimitSettings, "serve", [], "limits"),
    (CPUDeviceSettings, "serve", [], "trainer"),
    (AuditDataSettings, "audit", [], "data"),
    (AuditRootSettings, "audit", [], ""),
    (AuditOptions, "audit", [], "audit"),
]


def _compose(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(name, overrides=[f"paths.output_dir={output_dir}", *overrides])


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("settings", "name", "overrides", "prefix"),
    [pytest.param(*row, id=f"{row[0].__name__}:{row[1]}{row[2]}") for row in MIRRORS],
)
def test_defaults_mirror_the_shipped_yaml(
    settings: type, name: str, overrides: list[str], prefix: str, tmp_path: Path
) -> None:
    """Every key the YAML sets to a plain value has that value as its default; interpolated
    keys (`${seed}`, resolvers, environment variables) and required ones (`???`) aside."""
    cfg = _compose(name, overrides, tmp_path)
    group = OmegaConf.select(cfg, prefix) if prefix else cfg
    compared = 0
    for field in dataclasses.fields(settings):
        if field.name not in group or OmegaConf.is_missing(group, field.name):
            continue
        if OmegaConf.is_interpolation(group, field.name):
            continue
        expected = OmegaConf.to_container(group, resolve=False)[field.name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        assert _plain(default) == expected, f"{prefix}.{field.name}"
        compared += 1
    assert compared > 0


def test_mutable_defaults_are_not_shared() -> None:
    first, second = DataSettings(), DataSettings()
    assert first.class_aliases == second.class_aliases
    assert first.class_aliases is not second.class_aliases


def test_rules_of_names_keys_by_prefix_in_field_order() -> None:
    @dataclasses.dataclass(frozen=True)
    class Example:
        b: float = setting(number(0), 1.0)
        a: float = setting(number(1), 2.0)
        plain: int = 3  # no rule: not a checked key

    assert list(rules_of(Example, "group")) == ["group.b", "group.a"]
    assert list(rules_of(Example)) == ["b", "a"]
    assert list(rules_of(Example, "group", only=("a",))) == ["group.a"]
    with pytest.raises(ValueError, match="no field c"):
        rules_of(Example, only=("c",))
    assert all(isinstance(rule, Rule) for rule in rules_of(Example).values())


@pytest.mark.parametrize("detector", [CustomCNNDetector, MobileNetV2Detector])
def test_the_model_rules_are_those_of_the_selected_architecture(detector: type) -> None:
    cfg = OmegaConf.create(
        {"model": {"_target_": f"deepfake_detection.models.{detector.__name__}"}}
    )
    assert model_rules(cfg) == rules_of(detector.settings, "model")


@pytest.mark.parametrize(
    ("command", "overrides", "first", "also"),
    [
        ("evaluate", ["data.split=nope", "threshold=2"], "data.split=nope", "threshold"),
        ("robustness", ["calibration=platt", "data.split=nope"], "data.split=nope", "calibration"),
        ("predict", ["threshold=2", "backend=tflite"], "backend=tflite", "threshold"),
        ("export", ["calibration=platt", "format=tflite"], "format=tflite", "calibration"),
        ("serve", ["threshold=2", "backend=tflite"], "backend=tflite", "threshold"),
        ("audit", ["data.split_fractions=[1]", "seed=-1"], "seed=-1", "data.split_fractions"),
        (
            "train",
            ["trainer.accelerator=abacus", "trainer.max_epochs=0"],
            "trainer.max_epochs=0",
            "trainer.min_epochs, trainer.accelerator",
        ),
        (
            "train",
            ["augment.blur_sigma=[2,1]", "augment.noise_p=2"],
            "augment.noise_p=2",
            "augment.blur_sigma",
        ),
    ],
)
def test_several_mistakes_are_named_in_the_tables_order(
    command: str, overrides: list[str], first: str, also: str, tmp_path: Path
) -> None:
    """A command's table order decides which mistake is named first; it is the same as
    when one table held every command's rules."""
    from deepfake_detection.commands import COMMANDS
    from deepfake_detection.errors import ConfigError
    from deepfake_detection.rules import validate

    given = {
        "train": [],
        "audit": [f"data.root={tmp_path}"],
        "predict": [f"ckpt_path={tmp_path}", f"input={tmp_path}"],
    }.get(command, [f"ckpt_path={tmp_path}"])
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(command, overrides=[f"paths.output_dir={tmp_path}", *given, *overrides])
    rules = COMMANDS[command].rules
    with pytest.raises(ConfigError) as error:
        validate(cfg, rules(cfg) if callable(rules) else rules)
    message = str(error.value)
    assert message.startswith(first) and message.endswith(f"(also invalid: {also})"), message
