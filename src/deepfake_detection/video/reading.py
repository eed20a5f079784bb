"""Frames of a clip, sampled over its duration and decoded once, upright, with their times.

PyAV (the `av` package) bundles FFmpeg's libraries in its wheel, so mp4, mov, webm, avi and
mkv with their usual codecs decode the same everywhere, with no system FFmpeg. Frames are
chosen by their presentation time, not their index, so a variable frame rate samples
evenly in time; a phone clip's rotation (its display matrix) is applied, as players do.
Every way a file can fail becomes a `BadVideoError` with a short reason: a command counts
it as a skip or stops with one line naming the file, never a traceback or a hang.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.layout import VIDEO_EXTENSIONS
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)

#: Clips holding at most this many frames are decoded front to back (cheaper than a seek
#: per sampled frame, which decodes from the previous keyframe each time).
SEQUENTIAL_FRAMES = 3000


class BadVideoError(BadImageError):
    """One file that is not a usable clip; `reason` is short enough for a report line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(path, reason)
        self.args = (f"{path}: cannot read video: {reason}",)


@dataclass
class Frame:
    """A decoded frame: its time in seconds from the clip's start, and the upright picture.
    A clip shorter than its sample gives each frame once."""

    time: float
    image: Image.Image


@dataclass
class Clip:
    """The sampled frames of a clip and what the clip is."""

    path: str
    frames: list[Frame]
    duration: float
    width: int
    height: int
    #: The clip's average frame rate, as its stream declares it (0 when it does not).
    fps: float
    #: Degrees the frames were turned counter-clockwise to stand upright.
    rotation: int = 0
    #: Packets that could not be decoded and were skipped (a damaged file).
    damaged: int = 0

    def describe(self) -> dict[str, object]:
        return {
            "duration_s": round(self.duration, 3),
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "rotation": self.rotation,
            "damaged_packets": self.damaged,
        }


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def looks_like_video(name: str, head: bytes) -> bool:
    """Whether an upload is a clip: by its name, or by its first bytes (an ISO media `ftyp`
    box: mp4, mov; EBML: mkv, webm; RIFF AVI), whatever it is called."""
    return (
        is_video(name)
        or head[4:8] == b"ftyp"
        or head[:4] == b"\x1a\x45\xdf\xa3"
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
    )


def sample_times(duration: float, settings: VideoSettings) -> list[float]:
    """The times to score: `frames` evenly spread over the clip (the middle of each of as
    many equal parts), or one every 1/`fps` seconds; at most `max_frames`."""
    if settings.fps is not None:
        count = max(1, math.floor(duration * settings.fps))
    else:
        count = settings.frames
    count = min(count, settings.max_frames)
    return [duration * (i + 0.5) / count for i in range(count)]


def _upright(frame, rotation: int) -> Image.Image:
    image = frame.to_image()  # RGB, whatever the pixel format
    if rotation % 360:
        image = image.rotate(rotation, expand=True)  # counter-clockwise, as the matrix says
    return image


def _rotation(frame) -> int:
    try:
        return int(round(frame.rotation or 0))
    except (AttributeError, TypeError, ValueError):
        return 0


def _declared_span(container, stream) -> tuple[float, float]:
    """(start, duration) of the video stream in seconds, as the file declares them."""
    base = stream.time_base
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    if stream.duration:
        return start, float(stream.duration * base)
    if container.duration:
        return start, container.duration / 1_000_000
    return start, 0.0


def _packet_span(container, stream) -> tuple[float, float] | None:
    """(start, duration) from the packets' own times: a pass over the file that demuxes
    without decoding. Declared durations can be wrong (a variable frame rate, a cut file)."""
    base = stream.time_base
    first = last = None
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        begin = float(packet.pts * base)
        end = float((packet.pts + (packet.duration or 0)) * base)
        first = begin if first is None else min(first, begin)
        last = end if last is None else max(last, end)
    container.seek(0)
    if first is None or last is None:
        return None
    return first, max(0.0, last - first)


class _Decoding:
    """Decoded frames of one stream, packet by packet: a packet that fails to decode is
    counted and skipped (one damaged byte loses a frame, not the rest of the clip), and
    past `deadline` (time.monotonic()) decoding stops with a `BadVideoError`."""

    def __init__(self, container, stream, path: Path, deadline: float | None) -> None:
        self.container, self.stream, self.path = container, stream, path
        self.deadline = deadline
        self.lost = 0

    def frames(self):
        import av

        for packet in self.container.demux(self.stream):
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise BadVideoError(self.path, "reading it took longer than allowed")
            try:
                decoded = packet.decode()
            except (av.FFmpegError, *DAMAGED):
                self.lost += 1
                continue
            for frame in decoded:
                if frame.time is not None:
                    yield frame

    def in_order(self, times: list[float], start: float):
        """Each wanted time's frame, the one on screen at that time, front to back."""
        wanted = iter(times)
        target = next(wanted, None)
        shown = None
        for frame in self.frames():
            while target is not None and frame.time - start > target + 1e-6:
                yield target, shown or frame
                target = next(wanted, None)
            if target is None:
                return
            shown = frame
        while target is not None and shown is not None:  # times past the last frame
            yield target, shown
            target = next(wanted, None)

    def seeking(self, times: list[float], start: float):
        """Each wanted time's frame on screen, seeking to the keyframe before it (long
        clips)."""
        base = self.stream.time_base
        for target in times:
            self.container.seek(int((start + target) / base), stream=self.stream, backward=True)
            shown = None
            for frame in self.frames():
                if frame.time - start > target + 1e-6:
                    shown = shown or frame
                    break
                shown = frame
            if shown is not None:
                yield target, shown


#: What a damaged file can raise from inside PyAV besides its own errors: a header that
#: promises a codec or a size that is not there, a packet cut in half.
DAMAGED = (AttributeError, ArithmeticError, EOFError, IndexError, OSError, TypeError, ValueError)


def read_clip(
    source: str | Path | bytes,
    settings: VideoSettings,
    name: str = "",
    deadline: float | None = None,
    threads: int = 0,
) -> Clip:
    """The sampled frames of a clip file (or its bytes, an upload named `name`), upright.
    `BadVideoError` for what cannot be read as a video, is beyond `settings`' limits, or is
    still being read at `deadline` (`time.monotonic()`). `threads`: the decoder's threads
    (0: as many as FFmpeg picks)."""
    import av

    path = Path(name) if isinstance(source, bytes) else Path(source)
    opened = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        container = av.open(opened, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, *DAMAGED) as err:
        raise BadVideoError(path, _reason(err, "not a video FFmpeg can open")) from None
    try:
        with container:
            return _read(container, path, settings, deadline, threads)
    except (av.FFmpegError, *DAMAGED) as err:
        raise BadVideoError(path, _reason(err, "damaged or unsupported")) from None


def _read(
    container, path: Path, settings: VideoSettings, deadline: float | None, threads: int
) -> Clip:
    import av

    if not container.streams.video:
        raise BadVideoError(path, "no video stream (audio only, or not a video)")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise BadVideoError(
            path, f"its video codec ({stream.codec_tag or 'unknown'}) is not supported"
        )
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
    width, height = stream.codec_context.width, stream.codec_context.height
    limit = settings.max_frame_pixels
    if limit is not None and width * height > limit:
        raise BadVideoError(
            path, f"frames of {width}x{height} px exceed video.max_frame_pixels={limit}"
        )
    start, duration = _declared_span(container, stream)
    fps = float(stream.average_rate or 0)
    sequential = (stream.frames or duration * fps) <= SEQUENTIAL_FRAMES
    if sequential or duration <= 0:
        start, duration = _packet_span(container, stream) or (start, duration)
    if settings.max_seconds is not None and duration > settings.max_seconds:
        raise BadVideoError(
            path, f"{duration:.0f} s long, over video.max_seconds={settings.max_seconds:g}"
        )
    total = stream.frames or round(duration * fps)
    if settings.max_clip_frames is not None and total > settings.max_clip_frames:
        raise BadVideoError(
            path, f"{total} frames, over video.max_clip_frames={settings.max_clip_frames}"
        )
    times = sample_times(duration, settings)
    needed = len(times) * width * height * 3
    if needed > settings.max_decoded_mb * 1e6:
        raise BadVideoError(
            path,
            f"{len(times)} frames of {width}x{height} px would take {needed / 1e6:.0f} MB in "
            f"memory, over video.max_decoded_mb={settings.max_decoded_mb:g}: lower "
            "video.frames, video.fps or video.max_frames",
        )
    decoding = _Decoding(container, stream, path, deadline)
    decode = decoding.in_order if sequential else decoding.seeking
    frames: list[Frame] = []
    rotation = 0
    try:
        for _, frame in decode(times, start):
            at = round(frame.time - start, 6)
            if frames and at <= frames[-1].time:
                continue  # a short clip: two sampled times fell on one frame
            rotation = _rotation(frame)
            frames.append(Frame(at, _upright(frame, rotation)))
    except (av.FFmpegError, MemoryError, *DAMAGED) as err:
        if not frames:
            raise BadVideoError(path, _reason(err, "its frames cannot be decoded")) from None
        log.warning("%s: decoding stopped after %d frame(s): %s", path, len(frames), err)
    if not frames:
        raise BadVideoError(path, "no frame could be decoded")
    if decoding.lost:
        log.warning("%s: %d damaged packet(s) skipped", path, decoding.lost)
    return Clip(str(path), frames, duration, width, height, fps, rotation, decoding.lost)


def _reason(err: Exception, fallback: str) -> str:
    text = str(err).strip().replace(": '<none>'", "")  # FFmpeg's name for an in-memory file
    return f"{fallback} ({text})" if text else fallback
