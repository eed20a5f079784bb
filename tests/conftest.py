"""Shared fixtures: tiny generated Fake/Real datasets and composed Hydra configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from deepfake_detection.config import config_dir, register_resolvers

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One process per core already: more torch threads per process would only contend.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the commands the tests start

KAGGLE_SPLITS = {"Train": 8, "Validation": 4, "Test": 4}
LOWERCASE_SPLITS = {"train": 8, "valid": 4, "test": 4}


def write_image(path: Path, label: int, rng: np.random.Generator, size: int = 32) -> Path:
    """Real: smooth noise; Fake: the same with a checkerboard, like a generator's upsampling."""
    pixels = rng.normal(128, 30, (size // 2, size // 2, 3)).repeat(2, 0).repeat(2, 1)
    if label == 1:
        pixels += 40 * (np.indices((size, size)).sum(0) % 2)[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def make_dataset(
    root: Path,
    splits: dict[str, int] | None = None,
    classes: Iterable[str] = ("Fake", "Real"),
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write `<root>/<split>/<class>/*.png` with `splits[split]` images per class."""
    rng = np.random.default_rng(seed)
    for split, per_class in (splits or KAGGLE_SPLITS).items():
        for class_name in classes:
            label = 1 if class_name.lower() == "fake" else 0
            for i in range(per_class):
                write_image(root / split / class_name / f"{i:03d}.png", label, rng, size)
    return root


def make_tree(root: Path, folders: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Write `folders[f]` images into `<root>/<f>/` for each class folder path `f`.

    The label follows the last folder's name: Fake for names with "fake" in them
    (`Fake`, `1_fake`, `training_fake`), Real otherwise.
    """
    rng = np.random.default_rng(seed)
    for folder, count in folders.items():
        label = 1 if "fake" in Path(folder).name.lower() else 0
        for i in range(count):
            write_image(root / folder / f"{i:03d}.png", label, rng, size)
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `python -m <name>` would run with, writing into `output_dir`."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            name, overrides=[f"paths.output_dir={output_dir}", "data.num_workers=0", *overrides]
        )


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    return compose_config("train", overrides, output_dir)


def _train_tiny(
    factory: pytest.TempPathFactory, name: str, per_class: dict[str, int], overrides: list[str]
) -> Path:
    """Train one tiny run at 32 px on a generated dataset at `<run dir>/../data`."""
    from deepfake_detection.commands import TRAIN

    train = TRAIN.run  # the command: its config checked, then run

    root = factory.mktemp(name)
    dataset = make_dataset(root / "data", per_class)
    run_dir = root / "run"
    base = [f"data.root={dataset}", "data.image_size=32", "data.batch_size=8"]
    train(compose_train([*base, *overrides, "early_stopping=none"], run_dir))
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-epoch run of a tiny custom CNN on 12/6/6 images per class.

    Trained once per test session and shared: tests read it, or copy it to change it.
    Its dataset is `<run dir>/../data`.
    """
    return _train_tiny(
        tmp_path_factory,
        "tiny_run",
        {"train": 12, "valid": 6, "test": 6},
        ["model.widths=[4,8]", "trainer.max_epochs=2"],
    )


@pytest.fixture(scope="session")
def tiny_mobilenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished one-epoch run of MobileNetV2 (no ImageNet weights, last 2 blocks
    trainable) at 32 px; its dataset is `<run dir>/../data`."""
    return _train_tiny(
        tmp_path_factory,
        "tiny_mobilenet_run",
        {"train": 8, "valid": 4, "test": 4},
        [
            "model=mobilenet_v2",
            "model.pretrained=false",
            "freeze=last_n",
            "freeze.n=2",
            "trainer.max_epochs=1",
        ],
    )


def run_cli(
    args: list[str], cwd: Path, module: str = "train", **env: str
) -> subprocess.CompletedProcess:
    """Run `python -m <module> ...` as a user would, from `cwd`."""
    import os

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MOBILENET_V2_WEIGHTS": "", **env},
    )


def signal_in_second_epoch(
    command: list[str], run_dir: Path, cwd: Path, signum: int
) -> subprocess.CompletedProcess:
    """Start a Python training `command` (`[python, ...]`) that writes to `run_dir`; once the
    next epoch after the first is under way, send `signum` to its whole process group (as a
    job scheduler does: DataLoader workers and DDP processes included), and wait for it.

    The run goes through `paced_run.py`, which slows the later epochs' batches and says when
    the second epoch has begun, so the signal lands mid-epoch however busy the machine is.
    """
    import signal
    import time

    started = cwd / "second_epoch_started"
    proc = subprocess.Popen(
        [command[0], str(Path(__file__).with_name("paced_run.py")), *command[1:]],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOBILENET_V2_WEIGHTS": "", "PACED_RUN_MARK": str(started)},
        start_new_session=True,  # its own process group
    )
    deadline = time.monotonic() + 300
    while not started.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the run ended before its second epoch:\n{stderr[-3000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.Signals(signum))
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


#: What a bad-file kind should become: "bad" files are skipped (or stop the run), "ok" files
#: are decoded to RGB, "ignored" files are not data at all.
BAD_FILE_KINDS = {
    "zero_byte": "bad",
    "truncated_jpeg": "bad",
    "text_named_jpg": "bad",
    "decompression_bomb": "bad",
    "broken_symlink": "bad",
    "no_permission": "bad",
    "cmyk": "ok",
    "png_16bit": "ok",
    "palette_transparency": "ok",
    "rgba": "ok",
    "grayscale": "ok",
    "exif_rotated": "ok",
    "nested_subfolder": "ok",
    "ds_store": "ignored",
    "thumbs_db": "ignored",
}
#: Pixels above which `decompression_bomb` is refused (it has 96 x 96 = 9216).
BOMB_LIMIT = 5000


def make_bad_files(folder: Path) -> dict[str, Path]:
    """One file of every awkward kind a real dataset ships, in `folder`; see BAD_FILE_KINDS."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    files: dict[str, Path] = {}

    def save(kind: str, name: str, image: Image.Image, **kwargs) -> None:
        files[kind] = folder / name
        image.save(files[kind], **kwargs)

    files["zero_byte"] = folder / "zero.jpg"
    files["zero_byte"].write_bytes(b"")
    save("truncated_jpeg", "truncated.jpg", Image.fromarray(pixels), quality=95)
    data = files["truncated_jpeg"].read_bytes()
    files["truncated_jpeg"].write_bytes(data[: len(data) // 2])
    files["text_named_jpg"] = folder / "notes.jpg"
    files["text_named_jpg"].write_text("this is a text file, not a JPEG\n")
    save("decompression_bomb", "huge.png", Image.new("RGB", (96, 96), (9, 9, 9)))
    files["broken_symlink"] = folder / "dangling.png"
    files["broken_symlink"].symlink_to(folder / "does-not-exist.png")
    save("no_permission", "locked.png", Image.fromarray(pixels))
    os.chmod(files["no_permission"], 0)
    save("cmyk", "cmyk.jpg", Image.new("CMYK", (40, 30), (0, 50, 100, 0)))
    gradient = (np.linspace(0, 255, 1200).reshape(30, 40) * 200).astype(np.uint16)
    save("png_16bit", "deep.png", Image.fromarray(gradient))
    save("palette_transparency", "pal.png", Image.fromarray(pixels).convert("P"), transparency=0)
    save("rgba", "rgba.png", Image.fromarray(pixels).convert("RGBA"))
    save("grayscale", "gray.png", Image.fromarray(pixels).convert("L"))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    save("exif_rotated", "rotated.jpg", Image.fromarray(pixels), exif=exif)
    (folder / "nested" / "deeper").mkdir(parents=True)
    save("nested_subfolder", "nested/deeper/inner.png", Image.fromarray(pixels))
    files["ds_store"] = folder / ".DS_Store"
    files["ds_store"].write_bytes(b"\x00\x00\x00\x01Bud1")
    files["thumbs_db"] = folder / "Thumbs.db"
    files["thumbs_db"].write_bytes(b"\xd0\xcf\x11\xe0")
    return files


def permissions_apply() -> bool:
    """False when running as root, which reads files whatever their mode."""
    import os

    return not hasattr(os, "geteuid") or os.geteuid() != 0


def expected_kind(kind: str) -> str:
    """What a bad-file kind should become here (see BAD_FILE_KINDS)."""
    if kind == "no_permission" and not permissions_apply():
        return "ok"  # root reads it anyway; the mapping itself is tested separately
    return BAD_FILE_KINDS[kind]


def assert_skip_policy(files: dict[str, Path], kept: set[str], skipped_listing: str) -> int:
    """`kept` holds exactly the "ok" kinds and `skipped_files.txt` exactly the "bad" ones.

    Returns how many bad files there are, for the run's own skipped count.
    """
    for kind, path in files.items():
        outcome = expected_kind(kind)
        assert (str(path) in kept) == (outcome == "ok"), kind
        assert (f"{path}\t" in skipped_listing) == (outcome == "bad"), kind
    return sum(expected_kind(kind) == "bad" for kind in files)


def assert_names_a_bad_file(files: dict[str, Path], message: str) -> None:
    """An `on_bad_image=error` message starts with the path of one of the bad files."""
    bad = {str(path) for kind, path in files.items() if expected_kind(kind) == "bad"}
    assert any(message.startswith(path + ": ") for path in bad), message


# --- real faces that ship offline: scikit-image's astronaut photo ----------------------------


def astronaut() -> Image.Image:
    """scikit-image's `data.astronaut()` (512 px, one face; public domain, NASA)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def face_picture(
    rng: np.random.Generator, label: int, size: int = 128, faces: int = 1
) -> Image.Image:
    """A `size` px picture with `faces` copies of the astronaut's head at random places and
    scales on a random smooth background; Fake faces carry a checkerboard, as a generator's
    upsampling would leave. Mirrored at random."""
    background = rng.normal(128, 40, (4, 4, 3)).clip(0, 255).astype(np.uint8)
    canvas = Image.fromarray(background).resize((size, size), Image.BILINEAR)
    head = astronaut().crop((130, 10, 320, 220))
    for i in range(faces):
        side = int(size * rng.uniform(0.45, 0.6) / max(1, faces**0.5))
        face = head.resize((side, side), Image.BILINEAR)
        if rng.random() < 0.5:
            face = face.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.asarray(face).astype(np.float32)
        if label == 1:
            pixels += 30 * (np.indices((side, side)).sum(0) % 2)[..., None]
        face = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        column = (i % max(1, round(faces**0.5))) * (size // max(1, round(faces**0.5)))
        x = min(size - side, column + int(rng.integers(0, max(1, size // 8))))
        y = (
            int(rng.integers(0, size - side))
            if faces == 1
            else min(size - side, (i // max(1, round(faces**0.5))) * side)
        )
        canvas.paste(face, (x, y))
    return canvas


def face_frames(count: int, size: int = 128, without_face: tuple[int, ...] = ()) -> list:
    """The astronaut's head moving across a plain background; blank frames at `without_face`."""
    head = astronaut().crop((130, 10, 320, 220)).resize((size // 2, size // 2))
    frames = []
    for i in range(count):
        canvas = Image.new("RGB", (size, size), (90, 110, 130))
        if i not in without_face:
            canvas.paste(head, (int(i * (size // 2) / max(1, count - 1)), size // 4))
        frames.append(canvas)
    return frames


def make_face_dataset(
    root: Path, splits: dict[str, int] | None = None, size: int = 128, seed: int = 0
) -> Path:
    """`<root>/<split>/{Fake,Real}/*.png` of `face_picture`s."""
    rng = np.random.default_rng(seed)
    for split, per_class in (splits or {"Train": 6, "Validation": 3, "Test": 3}).items():
        for class_name, label in (("Fake", 1), ("Real", 0)):
            for i in range(per_class):
                path = root / split / class_name / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                face_picture(rng, label, size).save(path)
    return root


def train_face_run(root: Path, run_dir: Path, *overrides: str) -> Path:
    """One epoch of a tiny custom CNN with face=crop (64 px crops, 32 px input) on `root`;
    crops are kept in `<run dir>/../face-cache`."""
    from deepfake_detection.commands import TRAIN

    base = [f"data.root={root}", "data.image_size=32", "data.batch_size=4"]
    model = ["model.widths=[4,8]", "trainer.max_epochs=1", "early_stopping=none"]
    face = ["face=crop", "face.crop_size=64", f"face.cache_dir={run_dir.parent / 'face-cache'}"]
    TRAIN.run(compose_train([*base, *model, *face, *overrides], run_dir))
    return run_dir


def write_clip(
    path: Path,
    frames: Iterable[np.ndarray | Image.Image],
    fps: float = 10,
    codec: str = "libx264",
    rotation: int | None = None,
    times: list[float] | None = None,
    audio: bool = False,
) -> Path:
    """Encode `frames` (HxWx3 uint8 arrays or pictures) into a clip with PyAV.

    `rotation`: a display matrix turning the frames counter-clockwise when played, as phones
    write; `times`: each frame's time in seconds (a variable frame rate); `audio`: a second,
    silent audio stream."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000  # near lossless: tests read frames back by their colour
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=8000) if audio else None
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array[: stream.height, : stream.width], "rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            silence = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            silence.sample_rate = 8000
            container.mux(sound.encode(silence))
            container.mux(sound.encode())
    return path


def patch_gradient(detector, layer) -> float:
    """How much gradient of the Fake logit reaches the patch tokens at `layer`."""
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, out: seen.update(out=out))
    try:
        detector.eval()
        image = torch.randn(1, 3, 32, 32, requires_grad=True)
        logit = detector.net(image).sum()
        (grad,) = torch.autograd.grad(logit, seen["out"])
    finally:
        handle.remove()
    return float(grad[:, 1:, :].abs().sum())
