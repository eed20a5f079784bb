"""The keys of a trained detector and of the devices it runs on, shared by training (its
Trainer) and every command that scores images with a trained checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfake_detection.metrics.threshold_rules import EXPECTED, rule_problem
from deepfake_detection.rules import (
    Rule,
    either,
    existing_path,
    integer,
    list_of,
    one_of,
    or_null,
    rules_of,
    setting,
)

#: `trainer.precision` values Lightning 2 accepts (its `_PRECISION_INPUT`); a command-line
#: `trainer.precision=32` arrives as the int 32, which Lightning accepts too.
PRECISIONS: tuple[str | int, ...] = (
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64-true",
    "32",
    "16",
    "bf16",
    "64",
    32,
    16,
    64,
)

#: `trainer.accelerator` values Lightning accepts.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")

#: Ways of turning P(Fake) into a calibrated probability (`calibration`).
CALIBRATIONS = ("none", "temperature")

ACCELERATOR = one_of(*ACCELERATORS)
DEVICES = either(
    one_of("auto", -1),
    integer(1),
    list_of(integer(0), expected="device indices"),
    expected="auto, -1 (all), an integer >= 1 or a non-empty list of device indices",
)
PRECISION = one_of(*PRECISIONS)
#: A decision threshold: a number, or a rule applied to the training run's validation split
#: (`val`, `val_eer`, `val_fpr:<rate>`, `val_tpr:<rate>`; `metrics.operating_points`).
THRESHOLD = Rule(expected=EXPECTED, accepts=lambda value: rule_problem(value) is None)
CALIBRATION = one_of(*CALIBRATIONS)


def _is_validation_rule(value: Any) -> bool:
    return isinstance(value, str) and rule_problem(value) is None


#: A named operating point, chosen on the training run's validation split (an export carries
#: them): it replaces `threshold` when set.
OPERATING_POINT = Rule(
    expected="val, val_eer, val_fpr:<rate> or val_tpr:<rate> (rate in (0, 1))",
    accepts=_is_validation_rule,
    nullable=True,
)


@dataclass(frozen=True)
class DetectorSettings:
    """The root keys naming a trained detector and how it decides; `threshold` is 0.5 in
    conf/evaluate.yaml and predict.yaml, `val` in export, robustness and serve."""

    ckpt_path: str = setting(
        existing_path(
            "a training run dir or a .ckpt file, e.g. ckpt_path=outputs/train/<run>",
            required=True,
        )
    )
    threshold: float | str = setting(THRESHOLD, 0.5)
    calibration: str = setting(CALIBRATION, "none")


@dataclass(frozen=True)
class DeviceSettings:
    """`trainer.*` of a command that scores images: where, and at what precision (null: the
    training run's if full precision, else automatic)."""

    accelerator: str = setting(ACCELERATOR, "auto")
    devices: int | str | list[int] = setting(DEVICES, 1)
    precision: str | int | None = setting(or_null(PRECISION), None)


@dataclass(frozen=True)
class CPUDeviceSettings(DeviceSettings):
    """`trainer.*` of `export` and `serve`, which run on the CPU in float32."""

    accelerator: str = setting(ACCELERATOR, "cpu")
    precision: str | int | None = setting(or_null(PRECISION), "32-true")


#: Keys of a trained detector.
DETECTOR_RULES: dict[str, Rule] = rules_of(DetectorSettings)
#: Device keys of a command that scores images.
DEVICE_RULES: dict[str, Rule] = rules_of(DeviceSettings, "trainer")
