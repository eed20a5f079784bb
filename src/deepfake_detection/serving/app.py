"""The FastAPI app: /predict, /explain, /health, /info, /docs and the web page at /."""

from __future__ import annotations

import asyncio
import logging
import secrets
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
from deepfake_detection.detector.trained import TrainedDetector
from deepfake_detection.serving.batching import BatchScorer
from deepfake_detection.serving.explain import grad_cam, overlay_png
from deepfake_detection.serving.http_errors import ServiceError
from deepfake_detection.serving.uploads import FILES_FIELD, BodyLimit, read_uploads

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

    def limits(self) -> dict[str, Any]:
        return {
            "max_upload_mb": self.max_upload_bytes / 1e6,
            "max_files": self.max_files,
            "max_concurrent": self.max_concurrent,
            "request_timeout_s": self.request_timeout_s,
            "max_batch": self.max_batch,
        }


@dataclass
class _Gate:
    """At most `limit` scoring requests at once; the next one is told to retry (503)."""

    limit: int
    busy: int = field(default=0)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.busy >= self.limit:
            raise ServiceError(
                503,
                f"busy: {self.busy} requests in progress (limits.max_concurrent={self.limit})",
                headers={"Retry-After": "1"},
            )
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1


def _json_error(status_code: int, body: dict[str, Any], headers=None) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=headers)


def create_app(served: TrainedDetector, settings: ServiceSettings) -> FastAPI:
    scorer = BatchScorer(served.score, settings.max_batch)
    gate = _Gate(settings.max_concurrent)

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
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
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

    async def limited(work: Callable[[], Awaitable[T]]) -> T:
        async with gate.slot():
            try:
                return await asyncio.wait_for(work(), settings.request_timeout_s)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                raise ServiceError(
                    504,
                    f"took longer than limits.request_timeout_s={settings.request_timeout_s:g}",
                ) from None

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
        """P(Fake) and a Real/Fake label for each image of the `files` field."""

        async def work() -> dict[str, Any]:
            uploads = await read_uploads(request, served.preprocessing, settings.max_files)
            probs = await scorer.score(torch.stack([u.model_input for u in uploads]))
            return {
                "model": served.model_name,
                "backend": served.backend,
                "threshold": served.threshold,
                "results": [
                    {
                        "file": upload.name,
                        "prob_fake": prob,
                        "label": served.label(prob),
                        "threshold": served.threshold,
                    }
                    for upload, prob in zip(uploads, probs.tolist(), strict=True)
                ],
            }

        return await limited(work)

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
        X-Label and X-Threshold headers."""
        if served.detector is None:
            raise ServiceError(
                501,
                "explain needs the PyTorch checkpoint, which this exported model's "
                "source_checkpoint no longer points to",
            )
        detector = served.detector

        async def work() -> Response:
            uploads = await read_uploads(
                request, served.preprocessing, max_files=1, limit_name="/explain takes "
            )
            upload = uploads[0]
            prob = float((await scorer.score(upload.model_input.unsqueeze(0)))[0])
            heatmap = await scorer.run_exclusive(grad_cam, detector, upload.model_input)
            png = await anyio.to_thread.run_sync(
                overlay_png, upload.image, served.preprocessing, heatmap
            )
            return Response(
                png,
                media_type="image/png",
                headers={
                    "X-Prob-Fake": repr(prob),
                    "X-Label": served.label(prob),
                    "X-Threshold": repr(served.threshold),
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
