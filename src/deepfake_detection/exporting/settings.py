"""The keys of `deepfake-export`, and the table its config is checked against when the
command starts. Kept free of torch: a mistyped key is answered at once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.data.settings import IMAGE_READING_KEYS, SPLIT, ScoringDataSettings
from deepfake_detection.detector.settings import THRESHOLD, CPUDeviceSettings, DetectorSettings
from deepfake_detection.rules import (
    Rule,
    integer,
    number,
    one_of,
    ordered,
    rules_of,
    setting,
    validate,
    value_at,
)

#: `deepfake-export` formats.
EXPORT_FORMATS = ("onnx", "torch_export")
#: `quantize=`: none, or int8 (ONNX only).
QUANTIZE = ("none", "int8")


def _quantize_needs_onnx(value: Any, cfg: DictConfig) -> str | None:
    if value != "none" and str(value_at(cfg, "format")) != "onnx":
        return "an INT8 model is written with format=onnx"
    return None


@dataclass(frozen=True)
class ExportSettings(DetectorSettings):
    """The root keys of conf/export.yaml."""

    threshold: float | str = setting(THRESHOLD, "val")
    format: str = setting(one_of(*EXPORT_FORMATS), "onnx")
    #: int8: also an 8-bit ONNX model (`exporting.quantize`), checked on the test split.
    quantize: str = setting(replace(one_of(*QUANTIZE), extra=_quantize_needs_onnx), "none")


@dataclass(frozen=True)
class QuantizationSettings:
    """`quantization.*`: how `quantize=int8` quantizes and what it must keep."""

    #: static: activation ranges calibrated on validation images; dynamic: weights only;
    #: auto: static, else dynamic.
    method: str = setting(one_of("auto", "static", "dynamic"), "auto")
    calibration_images: int = setting(integer(8, 100_000), 256)
    calibrate: str = setting(one_of("minmax", "entropy", "percentile"), "minmax")
    #: The INT8 model's test AUROC may be at most this much below the float model's...
    max_auroc_drop: float = setting(number(0, 1), 0.002)
    #: ... and its test accuracy at the validation threshold at most this far from it.
    max_acc_drop: float = setting(number(0, 1), 0.005)

    @classmethod
    def of(cls, node: Any) -> QuantizationSettings:
        """From the (checked) `quantization` node; missing keys take their defaults."""
        return cls(**{k: v for k, v in dict(node or {}).items() if v is not None})


@dataclass(frozen=True)
class ParitySettings:
    """`parity.*`: the images on which the exported file must score as PyTorch does."""

    images: int = setting(integer(1, 256), 8)
    split: str = setting(SPLIT, "test")


#: Keys of `deepfake-export`.
EXPORT_RULES: dict[str, Rule] = ordered(
    {
        **rules_of(ExportSettings),
        **rules_of(ParitySettings, "parity"),
        **rules_of(QuantizationSettings, "quantization"),
        **rules_of(ScoringDataSettings, "data", only=IMAGE_READING_KEYS),
        **rules_of(CPUDeviceSettings, "trainer"),
    },
    "ckpt_path",
    "format",
    "quantize",
)


def validate_export_config(cfg: DictConfig) -> None:
    validate(cfg, EXPORT_RULES)
