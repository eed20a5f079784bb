"""Reading the images and clips of a multipart upload, refusing anything that is neither, by
name."""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio
import torch
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.clip_scoring import ClipInputs, clip_inputs
from deepfake_detection.detector.image_scoring import ImageInputs, image_inputs, no_face_note
from deepfake_detection.faces.stage import FaceMissingError, NoFaceError
from deepfake_detection.serving.http_errors import BodyTooLarge, ServiceError
from deepfake_detection.video.reading import looks_like_video, read_clip
from deepfake_detection.video.settings import VideoSettings

#: The multipart field that carries the images.
FILES_FIELD = "files"


@dataclass
class Upload:
    """One decoded upload: its name, the image, and the model inputs made from it (one per
    face with the face stage; none for a picture without a face under `on_missing=skip`)."""

    name: str
    image: Image.Image
    given: ImageInputs

    @property
    def inputs(self) -> list[torch.Tensor]:
        return self.given.inputs


@dataclass
class ClipUpload:
    """One uploaded video clip: its name and its sampled frames' model inputs."""

    name: str
    clip: ClipInputs

    @property
    def inputs(self) -> list[torch.Tensor]:
        return self.clip.tensors


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413, whether its
    Content-Length says so up front or it only turns out while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, key: str = "limits.max_upload_mb") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, BodyTooLarge(self.max_bytes, self.key))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes, self.key)
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Send, error: ServiceError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_form(
    request: Request,
    max_files: int,
    limit_name: str = "limits.max_files=",
    fields: tuple[str, ...] = (),
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """(name, bytes) of every file of the `files` field, and the text `fields` asked for.

    Refusals: 415 for a body that is not multipart/form-data, 400 for an empty form or too
    many files.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ServiceError(
            415,
            f"wrong content type {content_type or '(none)'!r}: send multipart/form-data "
            f"with the images in the field `{FILES_FIELD}`",
        )
    too_many = f"too many files: more than {max_files} in one request, {limit_name}{max_files}"
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 16)
    except HTTPException as err:  # Starlette's own multipart refusals
        if "too many files" in str(err.detail).lower():
            raise ServiceError(400, too_many) from None
        raise ServiceError(400, f"malformed multipart form: {err.detail}") from None
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected before the upload ended") from None
    try:
        files = [f for f in form.getlist(FILES_FIELD) if isinstance(f, UploadFile)]
        if not files:
            fields = ", ".join(sorted(set(form.keys()))) or "nothing"
            raise ServiceError(
                400, f"no images: put them in the multipart field `{FILES_FIELD}` (got {fields})"
            )
        if len(files) > max_files:
            raise ServiceError(400, too_many)
        contents = [(f.filename or f"upload {i + 1}", await f.read()) for i, f in enumerate(files)]
        given = {name: str(form[name]) for name in fields if isinstance(form.get(name), str)}
    finally:
        await form.close()
    return contents, given


def is_clip(name: str, data: bytes) -> bool:
    return looks_like_video(name, data[:16])


async def decode_uploads(
    contents: list[tuple[str, bytes]],
    preprocessing: Preprocessing,
    warn_small_face: float | None = None,
    video: VideoSettings | None = None,
    deadline: float | None = None,
    clip_threads: anyio.CapacityLimiter | None = None,
    image_threads: anyio.CapacityLimiter | None = None,
) -> list[Upload | ClipUpload]:
    """Each upload decoded and preprocessed in a worker thread: an image into its model
    inputs, and with `video`, a clip into its sampled frames' (`ClipUpload`), in one of the
    `clip_threads`, giving up at `deadline` (`time.monotonic()`); images in one of the
    `image_threads`. 422 naming every file that is neither."""

    def decode(name: str, data: bytes) -> Upload | ClipUpload | str:
        if video is not None and is_clip(name, data):
            try:
                clip = read_clip(data, video, name, deadline=deadline)
                return ClipUpload(name, clip_inputs(clip, preprocessing, video))
            except BadImageError as err:  # BadVideoError: no frame left, or beyond a limit
                return err.reason
            except FaceMissingError as err:
                return str(err).removeprefix(f"{name}: ")
        try:
            image = preprocessing.decode_bytes(data, name)
        except BadImageError as err:
            return err.reason
        try:
            given = image_inputs(preprocessing, image, name, warn_small_face, keep_crops=True)
        except NoFaceError as err:  # face.on_missing=skip: an answer, not a refusal
            return Upload(name, image, ImageInputs([], [], no_face_note(err.reason), image.size))
        except BadImageError as err:
            return err.reason
        except FaceMissingError as err:
            return str(err).removeprefix(f"{name}: ")
        return Upload(name, image, given)

    decoded = []
    for name, data in contents:
        clip = video is not None and is_clip(name, data)
        limiter = clip_threads if clip else image_threads  # clips never take the images' threads
        decoded.append(await anyio.to_thread.run_sync(decode, name, data, limiter=limiter))
    problems = [
        {"file": name, "error": result}
        for (name, _), result in zip(contents, decoded, strict=True)
        if isinstance(result, str)
    ]
    if problems:
        first = problems[0]
        clips = {name for name, data in contents if video is not None and is_clip(name, data)}
        what = "video" if first["file"] in clips else "image"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ServiceError(
            422, f"{first['file']}: not a usable {what}: {first['error']}{more}", errors=problems
        )
    return [upload for upload in decoded if not isinstance(upload, str)]
