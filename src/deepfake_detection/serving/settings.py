"""The keys of `deepfake-serve`, and the table its config is checked against when the command
starts. Kept free of torch and FastAPI: a mistyped key is answered at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.data.settings import IMAGE_READING_KEYS, ScoringDataSettings
from deepfake_detection.detector.settings import (
    OPERATING_POINT,
    THRESHOLD,
    CPUDeviceSettings,
    DetectorSettings,
)
from deepfake_detection.faces.settings import (
    DEFAULT_WARN_SMALL_FACE,
    SCORING_FACE_RULES,
    WARN_SMALL_FACE,
)
from deepfake_detection.rules import (
    Rule,
    boolean,
    integer,
    number,
    one_of,
    or_null,
    ordered,
    rules_of,
    setting,
    text,
    validate,
)
from deepfake_detection.video.settings import VIDEO_RULES

#: Backends a served model runs on; null: an exported file's own, else torch.
SERVE_BACKENDS = ("torch", "onnx")


def _is_origin_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


@dataclass(frozen=True)
class ServeSettings(DetectorSettings):
    """The root keys of conf/serve.yaml; `ckpt_path` may also be an exported model.onnx or
    model.pt2."""

    #: null: the model's own (an export's stored threshold; `val` for a checkpoint).
    threshold: float | str | None = setting(or_null(THRESHOLD), None)
    backend: str | None = setting(one_of(*SERVE_BACKENDS, nullable=True), None)
    #: A validation operating point (`val_fpr:0.01`, ...) in place of `threshold`.
    operating_point: str | None = setting(OPERATING_POINT, None)
    host: str = setting(text(), "127.0.0.1")
    port: int = setting(integer(1, 65535), 8000)
    # ${oc.env:DEEPFAKE_API_KEY,null}: with a key, requests need `Authorization: Bearer <key>`.
    api_key: str | None = setting(text(nullable=True), None)
    cors_origins: list[str] = setting(
        Rule(expected="a list of origins, e.g. [http://localhost:3000]", accepts=_is_origin_list),
        [],
    )
    #: A model trained without the face stage notes small faces (`faces.settings`).
    warn_small_face: float | None = setting(WARN_SMALL_FACE, DEFAULT_WARN_SMALL_FACE)


@dataclass(frozen=True)
class LimitSettings:
    """`limits.*`: what one request may ask, and how many are served at once."""

    max_upload_mb: float = setting(number(0, low_open=True), 20)
    max_files: int = setting(integer(1), 16)
    max_concurrent: int = setting(integer(1), 16)
    request_timeout_s: float = setting(number(0, low_open=True), 30)
    max_batch: int = setting(integer(1), 32)
    max_video_mb: float = setting(number(0, low_open=True), 200)
    max_concurrent_videos: int = setting(integer(1), 2)
    video_timeout_s: float = setting(number(0, low_open=True), 120)


@dataclass(frozen=True)
class CPUSettings:
    """`cpu.*`: how the service shares the cores between scoring and decoding; null derives
    a value from the cores this process may use."""

    #: Threads that score a batch (ONNX Runtime's intra-op threads, or PyTorch's).
    model_threads: int | None = setting(integer(1, nullable=True), None)
    #: Images decoded and prepared at once (clips have their own threads).
    decode_threads: int | None = setting(integer(1, nullable=True), None)
    #: Whether ONNX Runtime's idle threads busy-wait for the next batch.
    spinning: bool = setting(boolean(), False)


#: Keys of `deepfake-serve`.
SERVE_RULES: dict[str, Rule] = ordered(
    {
        **rules_of(ServeSettings),
        **rules_of(LimitSettings, "limits"),
        **rules_of(CPUSettings, "cpu"),
        **rules_of(ScoringDataSettings, "data", only=IMAGE_READING_KEYS),
        **SCORING_FACE_RULES,
        **VIDEO_RULES,
        **rules_of(CPUDeviceSettings, "trainer"),
    },
    "ckpt_path",
    "backend",
)


def validate_serve_config(cfg: DictConfig) -> None:
    validate(cfg, SERVE_RULES)
