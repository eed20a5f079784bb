"""The FastAPI app: /predict, /explain, /health, /info, /docs and the web page at /."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import deepfake_detection
from deepfake_detection.detector.clip_scoring import ClipInputs, ScoredVideo, scored_video
from deepfake_detection.detector.exported_model import TrainedDetector
from deepfake_detection.detector.image_scoring import ScoredImage, per_image, verdict_rule
from deepfake_detection.errors import ConfigError, one_line
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.metrics.threshold_rules import parse_rule
from deepfake_detection.serving.batching import BatchScorer
from deepfake_detection.serving.explain import grad_cam, overlay_png
from deepfake_detection.serving.http_errors import BodyTooLarge, ServiceError
from deepfake_detection.serving.uploads import (
    FILES_FIELD,
    BodyLimit,
    ClipUpload,
    Upload,
    decode_uploads,
    is_clip,
    read_form,
)
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
T = TypeVar("T")

#: OpenAPI description of the multipart body, which the handlers read themselves so that
#: every refusal is theirs to word.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILES_FIELD],
                    "properties": {
                        FILES_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True)
class ServiceSettings:
    """The `serve` config's security and limit keys."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 20_000_000
    max_files: int = 16
    max_concurrent: int = 16
    request_timeout_s: float = 30.0
    max_batch: int = 32
    #: A model trained without the face stage notes small faces (`faces.settings`).
    warn_small_face: float | None = DEFAULT_WARN_SMALL_FACE
    #: How an uploaded clip is sampled and scored, and the limits it must stay within.
    video: VideoSettings = field(default_factory=VideoSettings)
    max_video_bytes: int = 200_000_000
    max_concurrent_videos: int = 2
    video_timeout_s: float = 120.0
    #: Images decoded and prepared at once (`cpu.decode_threads`).
    decode_threads: int = 2

    def limits(self) -> dict[str, Any]:
        return {
            "max_upload_mb": self.max_upload_bytes / 1e6,
            "max_files": self.max_files,
            "max_concurrent": self.max_concurrent,
            "request_timeout_s": self.request_timeout_s,
            "max_batch": self.max_batch,
            "max_video_mb": self.max_video_bytes / 1e6,
            "max_concurrent_videos": self.max_concurrent_videos,
            "video_timeout_s": self.video_timeout_s,
            "video": self.video.describe(),
        }


@dataclass
class _Gate:
    """At most `limit` scoring requests (or clips) at once; the next is told to retry (503)."""

    limit: int
    key: str = "limits.max_concurrent"
    what: str = "requests"
    busy: int = field(default=0)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.busy >= self.limit:
            raise ServiceError(
                503,
                f"busy: {self.busy} {self.what} in progress ({self.key}={self.limit})",
                headers={"Retry-After": "1"},
            )
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1


def _json_error(status_code: int, body: dict[str, Any], headers=None) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=headers)


@dataclass(frozen=True)
class _Decision:
    """How one request decides: the service's threshold, or the operating point it asked for
    (`?operating_point=val_fpr:0.01`)."""

    threshold: float
    #: The operating point's name as a config writes it; the service's own rule when none.
    point: str

    def label(self, prob: float) -> str:
        return "Fake" if prob > self.threshold else "Real"

    @classmethod
    def of(cls, served: TrainedDetector, request: Request) -> _Decision:
        """From the request's query; an unknown point is a 422 that lists those there are."""
        asked = request.query_params.get("operating_point") or None
        if asked is None:
            return cls(served.threshold, served.threshold_rule)
        try:
            name = parse_rule(asked).name
            return cls(served.threshold_of(name), name)
        except ConfigError as err:
            raise ServiceError(422, one_line(err)) from None
        except ValueError as err:
            raise ServiceError(422, f"operating_point={asked}: {err}") from None


def _result(
    served: TrainedDetector, upload: Upload, probs: list[float], decision: _Decision
) -> dict[str, Any]:
    """One image's answer: its verdict, each face's box and score, and any note."""
    width, height = upload.given.size
    common = {
        "file": upload.name,
        "threshold": decision.threshold,
        "width": width,
        "height": height,
    }
    if not probs:  # no face, and face.on_missing=skip
        return {
            **common,
            "prob_fake": None,
            "label": "No face",
            "faces": [],
            "note": upload.given.note,
        }
    scored = ScoredImage.of(upload.name, upload.given, probs, verdict_rule(served.preprocessing))
    return {**common, **scored.as_json(decision.label)}


def top_frame(inputs: ClipInputs, video: ScoredVideo) -> dict[str, Any]:
    """The clip's highest-scoring frame for the page: its number, time, size, faces and the
    picture as a JPEG data URL (the page draws the boxes on it and asks /explain for it)."""
    scores = [f.prob if f.prob is not None else -1.0 for f in video.frames]
    number = max(range(len(scores)), key=scores.__getitem__)
    image = inputs.clip.frames[number].image
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    frame = video.frames[number]
    return {
        "index": number,
        "time": frame.time,
        "prob_fake": frame.prob,
        "width": image.width,
        "height": image.height,
        "faces": [
            {"box": face["box"], "prob_fake": face["prob_fake"], "area": face["area"]}
            for face in frame.faces
        ],
        "image": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }


def _check_sizes(
    contents: list[tuple[str, bytes]], clips: list[str], settings: ServiceSettings
) -> None:
    """413 for a clip over `limits.max_video_mb`, or images over `limits.max_upload_mb` in
    all (the body may be as large as a clip)."""
    for name, data in contents:
        if name in clips and len(data) > settings.max_video_bytes:
            raise ServiceError(
                413,
                f"{name}: video too large: over limits.max_video_mb "
                f"({settings.max_video_bytes / 1e6:g} MB per video)",
            )
    if sum(len(data) for name, data in contents if name not in clips) > settings.max_upload_bytes:
        raise BodyTooLarge(settings.max_upload_bytes)


def _face_number(value: str, upload: Upload) -> int:
    """The `face` field of /explain: which face of the image (0, the largest, by default)."""
    count = len(upload.inputs)
    if not count:
        raise ServiceError(422, f"{upload.name}: {upload.given.note}")
    if not value.strip().isdigit() or int(value) >= count:
        raise ServiceError(
            422, f"face={value!r}: this image has {count} face(s), numbered 0 to {count - 1}"
        )
    return int(value)


def create_app(served: TrainedDetector, settings: ServiceSettings) -> FastAPI:
    scorer = BatchScorer(served.score, settings.max_batch)
    gate = _Gate(settings.max_concurrent)
    videos = _Gate(settings.max_concurrent_videos, "limits.max_concurrent_videos", "clips")
    #: Threads that decode clips, apart from the ones images are decoded in.
    clip_threads = anyio.CapacityLimiter(settings.max_concurrent_videos)
    #: Threads that decode images: as many as the cores, not anyio's 40, so a burst of
    #: requests does not take the cores from the model.
    image_threads = anyio.CapacityLimiter(settings.decode_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await scorer.start()
        yield
        await scorer.stop()

    app = FastAPI(
        title="deepfake-detection",
        version=deepfake_detection.__version__,
        description=f"Real/Fake scores from {served.model_name} ({served.backend}).",
        lifespan=lifespan,
        docs_url=None,  # served below, behind the API key like the rest
        openapi_url=None,
    )
    app.state.served, app.state.settings, app.state.gate = served, settings, gate
    # A request may be as large as a clip; images alone are held to their own limit after.
    body_limit = max(settings.max_upload_bytes, settings.max_video_bytes)
    key = "limits.max_upload_mb"
    if settings.max_video_bytes > settings.max_upload_bytes:
        key = "limits.max_video_mb"
    app.add_middleware(BodyLimit, max_bytes=body_limit, key=key)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Prob-Fake", "X-Label", "X-Threshold"],
        )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        return _json_error(err.status_code, err.body(), err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _json_error(err.status_code, {"detail": err.detail}, err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return _json_error(422, {"detail": "invalid request", "errors": err.errors()})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _json_error(500, {"detail": f"internal error ({type(err).__name__})"})

    def authorised(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise ServiceError(
                401,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def timed(
        work: Awaitable[T],
        timeout: float = settings.request_timeout_s,
        key: str = "limits.request_timeout_s",
    ) -> T:
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            raise ServiceError(504, f"took longer than {key}={timeout:g}") from None

    async def limited(work: Callable[[], Awaitable[T]]) -> T:
        async with gate.slot():
            return await timed(work())

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: no key needed. `auth` says whether the other endpoints need one."""
        return {"status": "ok", "auth": settings.api_key is not None}

    @app.get("/info", tags=["service"], dependencies=[Depends(authorised)])
    async def info() -> dict[str, Any]:
        """The model, backend, threshold, image size, package version and limits."""
        return {**served.info(), "limits": settings.limits()}

    @app.post(
        "/predict",
        tags=["scoring"],
        dependencies=[Depends(authorised)],
        openapi_extra=_UPLOAD_BODY,
    )
    async def predict(request: Request) -> dict[str, Any]:
        """P(Fake) and a Real/Fake label for each image and video clip of the `files` field;
        with the face stage, also each face's box, P(Fake) and label (the image's verdict
        follows `face.verdict`), and a note when an image has no face or one too small. A
        clip (`"kind": "video"`) answers with its verdict (`video.aggregate` of its sampled
        frames) and every frame's time, score and faces. The query parameter
        `operating_point` (e.g. `val_fpr:0.01`, one of those `/info` lists) decides at that
        threshold instead of the service's own."""
        decision = _Decision.of(served, request)

        async def work(contents: list[tuple[str, bytes]]) -> dict[str, Any]:
            uploads = await decode_uploads(
                contents,
                served.preprocessing,
                settings.warn_small_face,
                settings.video,
                deadline=time.monotonic() + settings.video_timeout_s,
                clip_threads=clip_threads,
                image_threads=image_threads,
            )
            images = [u for u in uploads if isinstance(u, Upload)]
            inputs = [tensor for upload in images for tensor in upload.inputs]
            probs = (await scorer.score(torch.stack(inputs))).tolist() if inputs else []
            own = iter(per_image(probs, [upload.given for upload in images]))
            results = []
            for upload in uploads:
                if isinstance(upload, ClipUpload):
                    results.append(await _clip_result(upload))
                else:
                    results.append(_result(served, upload, next(own), decision))
            return {
                "model": served.model_name,
                "backend": served.backend,
                "threshold": decision.threshold,
                "operating_point": decision.point,
                "results": results,
            }

        async def _clip_result(upload: ClipUpload) -> dict[str, Any]:
            # In batches through the shared scorer: image requests go on between them.
            tensors, probs = upload.inputs, []
            for start in range(0, len(tensors), settings.max_batch):
                chunk = torch.stack(tensors[start : start + settings.max_batch])
                probs += (await scorer.score(chunk)).tolist()
            video = scored_video(upload.clip, probs, settings.video)
            top = await anyio.to_thread.run_sync(top_frame, upload.clip, video)
            return {
                "file": upload.name,
                "kind": "video",
                "threshold": decision.threshold,
                **video.as_json(decision.label),
                "top_frame": top,
            }

        async with gate.slot():
            # A body larger than images may be is a clip's upload: its own time to arrive.
            length = request.headers.get("content-length", "")
            big = length.isdigit() and int(length) > settings.max_upload_bytes
            timeout, key = settings.request_timeout_s, "limits.request_timeout_s"
            if big:
                timeout, key = settings.video_timeout_s, "limits.video_timeout_s"
            contents, _ = await timed(read_form(request, settings.max_files), timeout, key)
            clips = [name for name, data in contents if is_clip(name, data)]
            if len(clips) > 1:
                raise ServiceError(
                    400, f"{len(clips)} videos in one request: send each clip in its own request"
                )
            _check_sizes(contents, clips, settings)
            if not clips:
                return await timed(work(contents))
            # A clip takes seconds: its own slots and time limit, image requests go on.
            async with videos.slot():
                return await timed(
                    work(contents), settings.video_timeout_s, "limits.video_timeout_s"
                )

    @app.post(
        "/explain",
        tags=["scoring"],
        dependencies=[Depends(authorised)],
        openapi_extra=_UPLOAD_BODY,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def explain(request: Request) -> Response:
        """One image → its Grad-CAM overlay as PNG; the score is in the X-Prob-Fake,
        X-Label and X-Threshold headers (at `?operating_point=...` when asked). With the face
        stage, the form field `face` picks the face (0, the largest, by default) and the
        overlay is that face's crop."""
        if served.detector is None:
            raise ServiceError(
                501,
                "explain needs the PyTorch checkpoint, which this exported model's "
                "source_checkpoint no longer points to",
            )
        detector = served.detector
        decision = _Decision.of(served, request)

        async def work() -> Response:
            contents, fields = await read_form(
                request, max_files=1, limit_name="/explain takes ", fields=("face",)
            )
            _check_sizes(contents, [], settings)  # an image: the images' limit
            decoded = await decode_uploads(
                contents,
                served.preprocessing,
                settings.warn_small_face,
                image_threads=image_threads,
            )
            upload = decoded[0]
            assert isinstance(upload, Upload)
            number = _face_number(fields.get("face", "0"), upload)
            model_input = upload.inputs[number]
            seen = upload.given.crops[number] if upload.given.crops else upload.image
            prob = float((await scorer.score(model_input.unsqueeze(0)))[0])
            heatmap = await scorer.run_exclusive(grad_cam, detector, model_input)
            png = await anyio.to_thread.run_sync(overlay_png, seen, served.preprocessing, heatmap)
            return Response(
                png,
                media_type="image/png",
                headers={
                    "X-Prob-Fake": repr(prob),
                    "X-Label": decision.label(prob),
                    "X-Threshold": repr(decision.threshold),
                    "X-Face": str(number) if upload.given.faces else "",
                },
            )

        return await limited(work)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorised)])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorised)])
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="deepfake-detection API")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
