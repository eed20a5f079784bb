"""The keys of `deepfake-predict`, and the table its config is checked against when the
command starts. Kept free of torch: a mistyped key is answered at once."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from deepfake_detection.data.settings import PREDICTION_KEYS, ScoringDataSettings
from deepfake_detection.detector.settings import DEVICE_RULES, OPERATING_POINT, DetectorSettings
from deepfake_detection.faces.settings import (
    DEFAULT_WARN_SMALL_FACE,
    SCORING_FACE_RULES,
    WARN_SMALL_FACE,
)
from deepfake_detection.rules import (
    Rule,
    existing_path,
    one_of,
    ordered,
    rules_of,
    setting,
    validate,
)
from deepfake_detection.video.settings import VIDEO_RULES

#: How `deepfake-predict` scores: PyTorch, or an ONNX export run by ONNX Runtime.
PREDICT_BACKENDS = ("torch", "onnx")


@dataclass(frozen=True, kw_only=True)
class PredictSettings(DetectorSettings):
    """The root keys of conf/predict.yaml."""

    input: str = setting(
        existing_path("an image or video file, or a folder of them", required=True)
    )
    ckpt_path: str = setting(
        existing_path(
            "a training run dir, a .ckpt file, or an exported model.onnx / model.pt2",
            required=True,
        )
    )
    #: null: torch for a checkpoint, the file's own for an exported model.
    backend: str | None = setting(one_of(*PREDICT_BACKENDS, nullable=True), None)
    #: A validation operating point (`val_fpr:0.01`, ...) in place of `threshold`.
    operating_point: str | None = setting(OPERATING_POINT, None)
    #: A model trained without the face stage notes small faces (`faces.settings`).
    warn_small_face: float | None = setting(WARN_SMALL_FACE, DEFAULT_WARN_SMALL_FACE)


#: Keys of `deepfake-predict`.
PREDICT_RULES: dict[str, Rule] = ordered(
    {
        **rules_of(PredictSettings),
        **rules_of(ScoringDataSettings, "data", only=PREDICTION_KEYS),
        **SCORING_FACE_RULES,
        **VIDEO_RULES,
        **DEVICE_RULES,
    },
    "ckpt_path",
    "input",
    "backend",
)


def validate_predict_config(cfg: DictConfig) -> None:
    validate(cfg, PREDICT_RULES)
