"""`deepfake-serve`: load the model (a bad one stops here, with one line), then run uvicorn."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.detector.formats import OnnxThreads, configure_onnx_threads
from deepfake_detection.errors import ConfigError
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.serving.app import ServiceSettings, create_app
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)


def settings_of(cfg: DictConfig) -> ServiceSettings:
    limits = cfg.limits
    key = cfg.get("api_key")
    return ServiceSettings(
        api_key=str(key) if key not in (None, "") else None,
        cors_origins=tuple(OmegaConf.to_container(cfg.cors_origins) or ()),
        max_upload_bytes=int(float(limits.max_upload_mb) * 1e6),
        max_files=int(limits.max_files),
        max_concurrent=int(limits.max_concurrent),
        request_timeout_s=float(limits.request_timeout_s),
        max_batch=int(limits.max_batch),
        warn_small_face=cfg.get("warn_small_face", DEFAULT_WARN_SMALL_FACE),
        video=VideoSettings.from_config(cfg.get("video")),
        max_video_bytes=int(float(limits.get("max_video_mb", 200)) * 1e6),
        max_concurrent_videos=int(limits.get("max_concurrent_videos", 2)),
        video_timeout_s=float(limits.get("video_timeout_s", 120)),
        decode_threads=int(cfg.get("cpu", {}).get("decode_threads") or usable_cores()),
    )


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's CPU set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def share_the_cores(cfg: DictConfig) -> None:
    """Before the model loads: its threads (`cpu.model_threads`, default the cores), and
    ONNX Runtime's idle threads sleeping rather than spinning (`cpu.spinning`), so that the
    decoding threads get the cores between batches."""
    cpu = cfg.get("cpu", {})
    threads = int(cpu.get("model_threads") or usable_cores())
    configure_onnx_threads(OnnxThreads(threads, bool(cpu.get("spinning", False))))
    torch.set_num_threads(threads)


def serve(cfg: DictConfig) -> dict[str, Any]:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigError(
            "deepfake-serve needs FastAPI and uvicorn: pip install 'deepfake-detection[serve]'"
        ) from None
    share_the_cores(cfg)
    served = load_detector(cfg)
    settings = settings_of(cfg)
    app = create_app(served, settings)
    url = f"http://{cfg.host}:{cfg.port}"
    log.info(
        "serving %s (%s backend, threshold %.4g, %s) from %s",
        served.model_name,
        served.backend,
        served.threshold,
        served.threshold_rule,
        served.source,
    )
    steps = served.preprocessing.describe()["steps"]
    if served.preprocessing.face is not None:
        log.info("face stage: %s; %s", steps[1], steps[2])
    log.info(
        "page: %s/   API docs: %s/docs   %s",
        url,
        url,
        "API key required" if settings.api_key else "no API key",
    )
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_config=None, access_log=True)
    return served.info()
