"""Every awkward file kind, under both `data.on_bad_image` policies."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PIL import Image

from conftest import (
    BAD_FILE_KINDS,
    BOMB_LIMIT,
    assert_names_a_bad_file,
    expected_kind,
    make_bad_files,
    make_dataset,
)
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.images import BadImageError, load_rgb
from deepfake_detection.errors import ConfigError, DatasetError


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = make_dataset(tmp_path / "data", {"train": 4, "valid": 2, "test": 2})
    return root, make_bad_files(root / "train" / "Fake")


def datamodule(root: Path, policy: str) -> DeepfakeDataModule:
    return DeepfakeDataModule(
        root=str(root),
        image_size=32,
        batch_size=4,
        num_workers=0,
        on_bad_image=policy,
        max_image_pixels=BOMB_LIMIT,
    )


def test_generator_makes_every_kind(messy) -> None:
    _, files = messy
    assert set(files) == set(BAD_FILE_KINDS)


def test_skip_leaves_out_exactly_the_bad_files_and_keeps_the_rest(messy) -> None:
    root, files = messy
    dm = datamodule(root, "skip")
    train = {str(path) for path, _ in dm.index.splits["train"]}
    skipped = dict(dm.skipped)
    for kind, path in files.items():
        expected = expected_kind(kind)
        if expected == "bad":
            assert str(path) in skipped and str(path) not in train, kind
        elif expected == "ok":
            assert str(path) in train and str(path) not in skipped, kind
        else:
            assert str(path) not in train and str(path) not in skipped, kind
    assert "empty file" in skipped[str(files["zero_byte"])]
    assert "truncated" in skipped[str(files["truncated_jpeg"])]
    assert "not an image" in skipped[str(files["text_named_jpg"])]
    assert "max_image_pixels=5000" in skipped[str(files["decompression_bomb"])]
    assert "broken symlink" in skipped[str(files["broken_symlink"])]
    assert "skipped" in dm.describe()
    # A whole epoch over what is left decodes without a single error.
    batches = list(dm.dataloader("train", training=True))
    assert sum(len(batch[1]) for batch in batches) == len(train)


def test_error_stops_before_training_naming_a_bad_file(messy) -> None:
    root, files = messy
    bad = {str(p) for k, p in files.items() if expected_kind(k) == "bad"}
    with pytest.raises(DatasetError, match="data.on_bad_image=error") as info:
        _ = datamodule(root, "error").index
    message = str(info.value)
    assert_names_a_bad_file(files, message)
    assert f"and {len(bad) - 1} more" in message


def test_exif_orientation_is_applied(messy) -> None:
    _, files = messy
    assert Image.open(files["exif_rotated"]).size == (40, 30)
    assert load_rgb(files["exif_rotated"]).size == (30, 40)


def test_permission_denied_is_reported_as_such(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("deepfake_detection.data.images.Image.open", refuse)
    with pytest.raises(BadImageError, match="permission denied"):
        load_rgb(path)


def test_any_decoder_failure_is_a_bad_image(tmp_path: Path, monkeypatch) -> None:
    # Pillow's EXIF parser and decoders raise many types on corrupt input (struct.error, ...).
    path = tmp_path / "odd-exif.jpg"
    Image.new("RGB", (8, 8)).save(path)

    def corrupt_exif(image):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image.Image, "getexif", corrupt_exif)
    with pytest.raises(BadImageError, match="truncated or corrupt .error: unpack requires"):
        load_rgb(path)


def test_a_file_that_breaks_after_the_check(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "valid": 2, "test": 2})
    dm = datamodule(root, "skip")
    _ = dm.index  # checked: every file is fine
    broken = sorted(dm.index.splits["train"])[0][0]
    broken.write_bytes(b"")
    (root / "test" / "Real" / "000.png").write_bytes(b"")
    # Training stands in the next readable image, so the epoch goes on...
    train = dm.dataset("train")
    position = [path for path, _ in train.samples].index(broken)
    assert train[position][2] != position
    # ...but a scored split must be scored exactly as it is: its bad file is named.
    test = dm.dataset("test")
    with pytest.raises(BadImageError, match="000.png: cannot read image: empty file"):
        [test[i] for i in range(len(test))]


def test_only_the_splits_used_are_decoded(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "valid": 2, "test": 2})
    (root / "train" / "Fake" / "000.png").write_bytes(b"")  # evaluate of test never reads it
    dm = DeepfakeDataModule(
        root=str(root), required_splits=["test"], used_splits=["test"], on_bad_image="error"
    )
    assert set(dm.index.splits) == {"test"} and dm.skipped == []


def test_skipping_that_empties_a_class_is_an_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "valid": 1, "test": 1})
    (root / "test" / "Real" / "000.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="test split has no readable Real image"):
        _ = datamodule(root, "skip").index


def test_unknown_policy_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data.on_bad_image=ignore: choose one of: skip, error"):
        DeepfakeDataModule(root=str(tmp_path), on_bad_image="ignore")


def test_the_image_check_is_remembered_for_unchanged_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake_detection.data import scan

    files = make_bad_files(tmp_path / "images")
    paths = sorted(files.values())
    decoded: list[str] = []
    real_problem = scan._problem
    monkeypatch.setattr(
        scan, "_problem", lambda p, **kw: decoded.append(p) or real_problem(p, **kw)
    )
    remember = tmp_path / "checks"

    first = scan.find_bad_images_once(paths, remember_in=remember)
    assert len(decoded) == len(paths) and first
    decoded.clear()
    assert scan.find_bad_images_once(paths, remember_in=remember) == first
    assert decoded == []  # nothing decoded again
    # A rewritten file (new size and mtime) makes a new check of the whole list.
    good = files["png_16bit"]
    good.write_bytes(b"not an image any more")
    again = scan.find_bad_images_once(paths, remember_in=remember)
    assert len(decoded) == len(paths)
    assert str(good) in {path for path, _ in again} - {path for path, _ in first}
