"""The audit's shortcut check: a classifier on file metadata alone, per split."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from deepfake_detection.auditing import AuditSettings, audit, run_audit
from deepfake_detection.auditing.markdown import render
from deepfake_detection.auditing.shortcuts import (
    MIN_PER_CLASS,
    FileMeta,
    chance_auroc,
    check_split,
    estimate_jpeg_quality,
    read_meta,
)
from deepfake_detection.config import config_dir, register_resolvers

#: How one image is written: (image, path without suffix, label) -> path written.
Saver = Callable[[Image.Image, Path, str], Path]


def _noise(rng: np.random.Generator, size: int = 32) -> Image.Image:
    """Blocky noise: the same kind of content for both classes, so only the encoding differs."""
    pixels = rng.normal(128, 40, (size // 4, size // 4, 3)).repeat(4, 0).repeat(4, 1)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg(fake: dict, real: dict) -> Saver:
    def save(image: Image.Image, stem: Path, label: str) -> Path:
        path = stem.with_suffix(".jpg")
        image.save(path, format="JPEG", **(fake if label == "Fake" else real))
        return path

    return save


def _png_fake_jpeg_real(image: Image.Image, stem: Path, label: str) -> Path:
    if label == "Fake":
        image.save(stem.with_suffix(".png"))
        return stem.with_suffix(".png")
    image.save(stem.with_suffix(".jpg"), quality=90)
    return stem.with_suffix(".jpg")


def make_encoded(root: Path, splits: dict[str, int], save: Saver, seed: int = 0) -> Path:
    """`<root>/<split>/<class>/` with `splits[split]` noise images per class, written by `save`."""
    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for label in ("Fake", "Real"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                save(_noise(rng), folder / f"{i:03d}", label)
    return root


def compose_audit(overrides: list[str], output_dir: Path) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("audit", overrides=[f"paths.output_dir={output_dir}", *overrides])


def _shortcuts(root: Path, **options) -> dict:
    report = run_audit(root, workers=0, near_duplicates=False, **options)
    return report.to_json()["shortcuts"]


Q95_444 = {"quality": 95, "subsampling": 0}
Q75_420 = {"quality": 75, "subsampling": 2}


def test_jpeg_quality_and_subsampling_are_a_shortcut(tmp_path: Path) -> None:
    root = make_encoded(tmp_path / "data", {"Train": 16, "Test": 8}, _jpeg(Q95_444, Q75_420))
    report = run_audit(root, workers=0, near_duplicates=False)
    check = report.to_json()["shortcuts"]
    assert check["checked"] is True
    assert check["warned_splits"] == ["train", "test"]
    train = check["splits"]["train"]
    assert train["images"] == 32
    assert train["folds"] == 5
    assert train["auroc"] >= 0.95
    assert train["warned"] is True
    top = train["top_features"][0]
    assert top["feature"] in {"jpeg_quality", "subsampling"}
    assert top["auroc"] >= 0.95
    assert top["contrast"] == "JPEG quality: Fake median 95, Real median 75"
    assert report.summary["shortcut_warned_splits"] == ["train", "test"]
    text = render(report)
    assert "**WARNING: file metadata alone tells Fake from Real in train (AUROC 1.00)" in text
    assert "WARNING: shortcut in train: file metadata alone tells Fake from Real" in text
    assert "augment=deepfake" in text


def test_identically_saved_classes_are_not_a_shortcut(tmp_path: Path) -> None:
    same = {"quality": 85, "subsampling": 2}
    root = make_encoded(tmp_path / "data", {"Train": 60}, _jpeg(same, same))
    entry = _shortcuts(root)["splits"]["train"]
    assert entry["skipped"] is None
    assert abs(entry["auroc"] - 0.5) < 0.2
    assert entry["warned"] is False
    # Constant features carry nothing and are not listed: only bytes per pixel varies.
    assert [f["feature"] for f in entry["top_features"]] == ["bytes_per_pixel"]


def test_png_fakes_and_jpeg_reals_are_a_shortcut(tmp_path: Path) -> None:
    root = make_encoded(tmp_path / "data", {"Train": 12}, _png_fake_jpeg_real)
    entry = _shortcuts(root)["splits"]["train"]
    assert entry["warned"] is True
    assert entry["auroc"] >= 0.95
    top = entry["top_features"][0]
    assert top["feature"] in {"format", "bytes_per_pixel"}
    assert top["contrast"] == "format: Fake 100% PNG, Real 100% JPEG"


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_recovered_from_the_tables(tmp_path: Path, quality: int) -> None:
    path = tmp_path / "image.jpg"
    _noise(np.random.default_rng(quality)).save(path, quality=quality)
    meta = read_meta(path)
    assert meta is not None and meta.jpeg_quality is not None
    assert abs(meta.jpeg_quality - quality) <= 2
    with Image.open(path) as image:
        assert abs(estimate_jpeg_quality(image.quantization[0]) - quality) <= 2


@pytest.mark.parametrize(("code", "name"), [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_subsampling_is_read_from_the_header(tmp_path: Path, code: int, name: str) -> None:
    path = tmp_path / "image.jpg"
    _noise(np.random.default_rng(0)).save(path, quality=80, subsampling=code)
    meta = read_meta(path)
    assert meta is not None
    assert (meta.format, meta.subsampling, meta.exif) == ("JPEG", name, False)


def test_other_metadata_is_read_without_decoding(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    image = _noise(np.random.default_rng(0), size=64).resize((64, 48))
    image.save(tmp_path / "photo.jpg", quality=90, exif=exif)
    image.save(tmp_path / "render.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    photo = read_meta(tmp_path / "photo.jpg")
    render_ = read_meta(tmp_path / "render.png")
    assert photo is not None and render_ is not None
    assert (photo.width, photo.height, photo.exif) == (64, 48, True)
    size = (tmp_path / "render.png").stat().st_size
    assert render_ == FileMeta("PNG", 64, 48, size / (64 * 48), None, None, False)
    assert read_meta(tmp_path / "broken.jpg") is None


def test_shortcuts_false_skips_the_check(tmp_path: Path) -> None:
    root = make_encoded(tmp_path / "data", {"Train": 6}, _jpeg(Q95_444, Q75_420))
    out = tmp_path / "out"
    cfg = compose_audit(
        [f"data.root={root}", "audit.shortcuts=false", "audit.near_duplicates=false"], out
    )
    settings = AuditSettings.from_config(cfg)
    assert settings.shortcuts is False
    report = audit(cfg, settings)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["shortcuts"]["checked"] is False
    assert saved["shortcuts"]["splits"] == {}
    assert saved["settings"]["shortcuts"] is False
    assert report.shortcut_splits == []
    assert "Not checked (audit.shortcuts=false)." in (out / "audit.md").read_text()


def test_a_split_too_small_is_skipped_with_a_reason(tmp_path: Path) -> None:
    splits = {"Train": 12, "Validation": MIN_PER_CLASS - 1}
    root = make_encoded(tmp_path / "data", splits, _jpeg(Q95_444, Q75_420))
    (root / "Test" / "Fake").mkdir(parents=True)
    for i in range(6):  # a split of one class: nothing to tell apart
        _noise(np.random.default_rng(i)).save(root / "Test" / "Fake" / f"{i}.jpg")
    check = _shortcuts(root)
    val = check["splits"]["val"]
    assert val["warned"] is False
    assert val["skipped"].startswith("too few images to tell a shortcut from chance")
    assert f"Fake: {MIN_PER_CLASS - 1}, Real: {MIN_PER_CLASS - 1}" in val["skipped"]
    assert "Real: 0" in check["splits"]["test"]["skipped"]
    assert check["splits"]["train"]["warned"] is True
    assert check["warned_splits"] == ["train"]


def test_an_auroc_within_chance_is_not_warned_about() -> None:
    """On a small split the check needs more than the level: chance reaches it too often."""
    labels = ["Fake"] * MIN_PER_CLASS + ["Real"] * MIN_PER_CLASS
    qualities = [95] * 7 + [75] + [75] * 7 + [95]  # one file of each class the other way
    metas = [FileMeta("JPEG", 32, 32, 1.0, q, "4:2:0", False) for q in qualities]
    entry = check_split(metas, labels, seed=0, warn_auroc=0.6)
    assert 0.6 < entry["auroc"] <= entry["chance_auroc"]
    assert entry["warned"] is False
    assert entry["top_features"][0]["contrast"] == "JPEG quality: Fake median 95, Real median 75"


def test_chance_level_shrinks_with_the_split() -> None:
    assert chance_auroc(MIN_PER_CLASS, MIN_PER_CLASS) < 1
    assert 0.75 < chance_auroc(20, 20) < 0.8
    assert chance_auroc(10_000, 10_000) < 0.52


def test_the_command_prints_and_logs_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    root = make_encoded(tmp_path / "data", {"Train": 12}, _png_fake_jpeg_real)
    out = tmp_path / "out"
    overrides = [f"data.root={root}", "audit.shortcut_warn_auroc=0.9", "audit.num_workers=0"]
    cfg = compose_audit(overrides, out)
    settings = AuditSettings.from_config(cfg)
    assert settings.shortcut_warn_auroc == 0.9
    with caplog.at_level(logging.WARNING):
        audit(cfg, settings)
    printed = capsys.readouterr().out
    assert "WARNING: shortcut in train" in printed
    assert "(above 0.9)" in printed
    assert any("shortcut in train" in record.getMessage() for record in caplog.records)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["shortcuts"]["settings"]["warn_auroc"] == 0.9
    assert saved["summary"]["shortcut_warned_splits"] == ["train"]


def test_a_high_level_is_not_warned_about(tmp_path: Path) -> None:
    root = make_encoded(tmp_path / "data", {"Train": 8}, _png_fake_jpeg_real)
    check = _shortcuts(root, shortcut_warn_auroc=1.0)  # nothing is above 1
    assert check["splits"]["train"]["auroc"] == 1.0
    assert check["warned_splits"] == []


def test_unreadable_header_bytes_do_not_stop_the_check(tmp_path: Path) -> None:
    data = io.BytesIO()
    _noise(np.random.default_rng(0)).save(data, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[:20])  # the quantisation tables are cut off
    assert read_meta(path) is None
