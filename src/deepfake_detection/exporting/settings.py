"""The keys of `deepfake-export`, and the table its config is checked against when the
command starts. Kept free of torch: a mistyped key is answered at once."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from deepfake_detection.data.settings import IMAGE_READING_KEYS, SPLIT, ScoringDataSettings
from deepfake_detection.detector.settings import THRESHOLD, CPUDeviceSettings, DetectorSettings
from deepfake_detection.rules import Rule, integer, one_of, ordered, rules_of, setting, validate

#: `deepfake-export` formats.
EXPORT_FORMATS = ("onnx", "torch_export")


@dataclass(frozen=True)
class ExportSettings(DetectorSettings):
    """The root keys of conf/export.yaml."""

    threshold: float | str = setting(THRESHOLD, "val")
    format: str = setting(one_of(*EXPORT_FORMATS), "onnx")


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
        **rules_of(ScoringDataSettings, "data", only=IMAGE_READING_KEYS),
        **rules_of(CPUDeviceSettings, "trainer"),
    },
    "ckpt_path",
    "format",
)


def validate_export_config(cfg: DictConfig) -> None:
    validate(cfg, EXPORT_RULES)
