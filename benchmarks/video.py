"""A clip's verdict, timed: decoding, the face stage and scoring, on the ONNX backend.

    python benchmarks/video.py [--ckpt <run dir>] [--clip <video>] [--frames 32] [--repeats 3]

Without `--clip` it writes a 10-second 1280x720 H.264 clip at 30 fps: a face photo (the
astronaut of scikit-image, or `--face <image>`) moving across a textured background, so the
face stage has a face to find in every frame. Without `--ckpt` it trains a throwaway
MobileNetV2 at 160 px (a few batches; speed does not depend on the weights). The run is
exported to ONNX with `deepfake-export`, then each repeat reads the clip (PyAV), crops the
largest face of each sampled frame (YuNet) and scores the crops (ONNX Runtime), in this
process, as `deepfake-predict backend=onnx` does. Reports the median of each stage and of
the whole verdict; prints a Markdown table and writes benchmark_video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def sh(args: list[str], cwd: Path) -> None:
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


def train_checkpoint(work: Path) -> Path:
    weights = os.environ.get("MOBILENET_V2_WEIGHTS")
    run_dir = work / "run"
    sh(
        [
            sys.executable,
            "-m",
            "train",
            "model=mobilenet_v2",
            f"model.pretrained={'true' if weights else 'false'}",
            "data.image_size=160",
            "trainer.max_epochs=1",
            "early_stopping=none",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2",
            f"hydra.run.dir={run_dir}",
        ],
        work,
    )
    return run_dir


def face_photo(given: str | None) -> Image.Image:
    if given:
        return Image.open(given).convert("RGB")
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((100, 0, 360, 260))


def write_clip(path: Path, face: Image.Image, seconds: float = 10, fps: int = 30) -> Path:
    """A 1280x720 H.264 clip: `face` (360 px) moving across a blurred noise background."""
    import av

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    background = Image.fromarray(noise).resize((1280, 720)).filter(ImageFilter.GaussianBlur(4))
    face = face.resize((360, 360))
    count = int(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(count):
            frame = background.copy()
            frame.paste(face, (int(100 + 700 * i / count), 180))
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return path


def export_onnx(run_dir: Path, work: Path) -> Path:
    out = work / "export"
    sh(
        [
            sys.executable,
            "-m",
            "deepfake_detection.export",
            f"ckpt_path={run_dir}",
            "format=onnx",
            f"hydra.run.dir={out}",
        ],
        work,
    )
    return out / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a training run dir (default: train a throwaway one)")
    parser.add_argument("--clip", help="a video file (default: a generated 10 s 720p clip)")
    parser.add_argument("--face", help="a face photo for the generated clip")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmark_video.json")
    args = parser.parse_args()

    from deepfake_detection.data.preprocess import Preprocessing
    from deepfake_detection.detector.clip_scoring import clip_inputs, scored_video
    from deepfake_detection.detector.formats import load_runner
    from deepfake_detection.detector.spec import ExportSpec
    from deepfake_detection.faces.settings import FaceSettings
    from deepfake_detection.video.reading import read_clip
    from deepfake_detection.video.settings import VideoSettings

    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    run_dir = Path(args.ckpt) if args.ckpt else train_checkpoint(work)
    clip_file = (
        Path(args.clip) if args.clip else write_clip(work / "clip.mp4", face_photo(args.face))
    )
    model_file = export_onnx(run_dir, work)
    spec = ExportSpec.load(model_file)
    preprocessing = Preprocessing.from_description(spec.preprocessing)
    if preprocessing.face is None:  # a whole-image model: crop faces anyway, as face=crop does
        preprocessing = preprocessing.with_face({"name": "crop", "cache": False})
    assert isinstance(preprocessing.face, FaceSettings)
    score = load_runner(model_file, "onnx")
    settings = VideoSettings(frames=args.frames)

    rows = []
    for _ in range(args.repeats + 1):  # the first warms the caches and the face detector
        started = time.perf_counter()
        clip = read_clip(clip_file, settings)
        decoded = time.perf_counter()
        inputs = clip_inputs(clip, preprocessing, settings)
        cropped = time.perf_counter()
        import torch

        probs = score(torch.stack(inputs.tensors)).tolist()
        video = scored_video(inputs, probs, settings)
        ended = time.perf_counter()
        rows.append(
            {
                "decode_s": decoded - started,
                "face_stage_s": cropped - decoded,
                "score_s": ended - cropped,
                "verdict_s": ended - started,
                "frames": video.used,
                "without_face": video.without_face,
            }
        )
    rows = rows[1:]
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    described = clip.describe()
    result = {
        "clip": str(clip_file),
        **described,
        "frames_sampled": args.frames,
        "model": spec.model,
        "image_size": spec.preprocessing["image_size"],
        "threads": os.cpu_count(),
        "repeats": rows,
        "median": median,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"clip: {described['width']}x{described['height']}, {described['duration_s']} s, "
        f"{described['fps']} fps; {args.frames} frames sampled; {spec.model} at "
        f"{spec.preprocessing['image_size']} px, ONNX Runtime; {os.cpu_count()} CPU cores\n"
    )
    print("| stage | median s | share |")
    print("|---|---|---|")
    for key, label in (
        ("decode_s", "decode and sample (PyAV)"),
        ("face_stage_s", "face stage: detect, crop, resize (YuNet)"),
        ("score_s", "score the crops (ONNX Runtime)"),
        ("verdict_s", "**the clip's verdict**"),
    ):
        print(f"| {label} | {median[key]:.3f} | {median[key] / median['verdict_s']:.0%} |")
    print(f"\nframes without a face: {rows[0]['without_face']} of {rows[0]['frames']}")


if __name__ == "__main__":
    main()
