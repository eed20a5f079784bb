"""The face stage: crop policy (with a stub detector), and the real detector on real faces
(scikit-image's astronaut photo) pasted, mirrored, rotated and tiled into pictures."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import astronaut, face_picture
from deepfake_detection.errors import ConfigError
from deepfake_detection.faces import detectors
from deepfake_detection.faces.detectors import Face
from deepfake_detection.faces.geometry import cut, eye_angle, output_size, region
from deepfake_detection.faces.settings import FaceSettings, scoring_face
from deepfake_detection.faces.stage import FaceMissingError, FaceStage, NoFaceError
from deepfake_detection.faces.store import FaceCropStore

# --- policy, with a stub detector ------------------------------------------------------------


class Stub:
    """Answers the faces it was given, whatever the image (in pixels of the searched image)."""

    faces: list[Face] = []
    searched: list[tuple[int, int]] = []

    def __init__(self, settings: FaceSettings) -> None:
        pass

    def detect(self, rgb: np.ndarray) -> list[Face]:
        Stub.searched.append(rgb.shape[:2])
        return list(Stub.faces)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> type[Stub]:
    monkeypatch.setitem(detectors.BUILTIN, "stub", Stub)
    Stub.faces, Stub.searched = [], []
    return Stub


def stub_stage(**settings) -> FaceStage:
    return FaceStage(FaceSettings(detector="stub", **settings))


def grey(size: tuple[int, int] = (200, 100)) -> Image.Image:
    return Image.new("RGB", size, (90, 90, 90))


def test_largest_face_first_and_small_ones_ignored(stub) -> None:
    stub.faces = [Face((0, 0, 30, 30), 0.9), Face((50, 10, 60, 60), 0.8), Face((5, 5, 10, 10), 1)]
    stage = stub_stage(min_size=20)
    assert [f.box for f in stage.find(grey())] == [(50, 10, 60, 60), (0, 0, 30, 30)]
    assert len(stage.crops(grey(), "all")) == 2
    assert len(stage.crops(grey(), "largest")) == 1


def test_large_images_are_searched_small_and_boxes_mapped_back(stub) -> None:
    stub.faces = [Face((10, 20, 30, 40), 0.9, ((15, 30), (25, 30), (20, 40), (15, 50), (25, 50)))]
    (face,) = stub_stage(detect_size=100, min_size=1).find(grey((400, 200)))
    assert stub.searched == [(50, 100)]
    assert face.box == (40, 80, 120, 160)
    assert face.landmarks[0] == (60, 120)


def test_crop_geometry_margin_square_and_size() -> None:
    settings = FaceSettings(margin=1.5, crop_size=64)
    area = region(Face((100, 50, 40, 80), 1.0), settings)
    assert (area.cx, area.cy, area.width, area.height) == (120, 90, 120, 120)
    assert output_size(area, settings) == (64, 64)
    wide = FaceSettings(margin=1.0, square=False, crop_size=64)
    assert output_size(region(Face((0, 0, 40, 80), 1.0), wide), wide) == (32, 64)


def test_a_face_at_the_border_keeps_its_framing() -> None:
    """Outside the image, the border pixels are repeated: no black band."""
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[:, :50] = 200
    area = region(Face((-10, 20, 40, 40), 1.0), FaceSettings(margin=1.3, crop_size=52))
    crop = cut(pixels, area, (52, 52))
    assert crop.shape == (52, 52, 3)
    assert crop[:, :10].min() == 200  # left of the image: its left column repeated


def test_alignment_levels_the_eyes() -> None:
    tilted = Face((0, 0, 50, 50), 1.0, ((10, 10), (30, 30), (20, 25), (0, 0), (0, 0)))
    assert eye_angle(tilted) == pytest.approx(45)
    assert region(tilted, FaceSettings(align=True)).angle == pytest.approx(45)
    assert region(tilted, FaceSettings(align=False)).angle == 0


def test_no_face_policy(stub) -> None:
    image = grey()
    assert stub_stage(on_missing="whole").model_image(image, "a.png") is image
    with pytest.raises(NoFaceError, match="a.png: no face found"):
        stub_stage(on_missing="skip").model_image(image, "a.png")
    with pytest.raises(FaceMissingError, match=r"a.png: no face found.*on_missing=error"):
        stub_stage(on_missing="error").model_image(image, "a.png")


def test_a_detector_of_your_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_faces.py").write_text(
        textwrap.dedent(
            """
            from deepfake_detection.faces.detectors import Face

            class Everywhere:
                def __init__(self, settings):
                    self.settings = settings

                def detect(self, rgb):
                    return [Face((0, 0, rgb.shape[1], rgb.shape[0]), 1.0)]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    stage = FaceStage(FaceSettings(detector="my_faces:Everywhere", crop_size=40))
    (crop,) = stage.crops(grey((80, 60)))
    assert crop.image.size == (40, 40)
    with pytest.raises(ConfigError, match="face.detector=my_faces:Nowhere: cannot import"):
        FaceStage(FaceSettings(detector="my_faces:Nowhere")).find(grey())


def test_settings_and_what_a_scoring_command_changes() -> None:
    assert FaceSettings.from_config({"name": "none"}) is None
    assert FaceSettings.from_config(None) is None
    with pytest.raises(ConfigError, match="face.align=true: the haar detector"):
        FaceSettings.from_config({"name": "crop", "detector": "haar", "align": True})
    trained = {"name": "crop", "margin": 1.5}
    assert scoring_face(trained, {"name": None, "select": "all"}).margin == 1.5
    assert scoring_face(trained, {"select": "all"}).select == "all"
    assert scoring_face(trained, {"name": "none"}) is None
    assert scoring_face(None, {"select": "all"}) is None  # trained without the stage
    assert scoring_face(None, {"name": "crop"}).margin == 1.3


def test_a_missing_model_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"face.model_path=.*yunet.onnx: OpenCV cannot load"):
        FaceStage(FaceSettings(model_path=str(bad))).find(grey())


def test_store_crops_once_and_again_when_a_file_changes(stub, tmp_path: Path) -> None:
    stub.faces = [Face((10, 10, 40, 40), 0.9)]
    images = []
    for i in range(3):
        images.append(tmp_path / f"{i}.png")
        grey((80, 80)).save(images[-1])
    settings = FaceSettings(detector="stub", crop_size=32, cache_dir=str(tmp_path / "cache"))
    first = FaceCropStore(settings).prepare(images)
    assert first.made == 3 and not first.missing
    assert Image.open(first.read_from[str(images[0])]).size == (32, 32)
    assert FaceCropStore(settings).prepare(images).made == 0
    grey((90, 90)).save(images[1])
    again = FaceCropStore(settings).prepare(images)
    assert again.made == 1
    stub.faces = []
    other = FaceSettings(detector="stub", crop_size=48, cache_dir=str(tmp_path / "cache"))
    missing = FaceCropStore(other).prepare(images)
    assert missing.missing == [str(p) for p in images]
    assert missing.read_from == {str(p): p for p in images}  # on_missing=whole


# --- the real detector on real faces ---------------------------------------------------------


def canvas(size: int = 640, colour: tuple[int, int, int] = (70, 110, 90)) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def test_finds_the_astronaut_wherever_she_is() -> None:
    stage = FaceStage(FaceSettings())
    photo = astronaut()
    (face,) = stage.find(photo)
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200  # her face, not the flag
    small = canvas()
    small.paste(photo.resize((160, 160)), (440, 420))  # a face covering 1 % of the picture
    (found,) = stage.find(small)
    assert 440 < found.box[0] < 600 and 420 < found.box[1] < 580
    assert len(stage.find(photo.transpose(Image.FLIP_LEFT_RIGHT))) == 1
    assert len(stage.find(photo.rotate(20, fillcolor=(0, 0, 0)))) == 1


def test_a_group_picture_gives_every_face() -> None:
    rng = np.random.default_rng(0)
    group = canvas(900)
    head = astronaut().crop((130, 10, 320, 220)).resize((140, 140))
    for i in range(9):
        group.paste(head, (40 + (i % 3) * 300, 40 + (i // 3) * 300))
    crops = FaceStage(FaceSettings()).crops(group, "all")
    assert len(crops) == 9
    assert all(c.image.size == (256, 256) for c in crops)
    assert rng is not None


def test_alignment_follows_the_detectors_landmarks() -> None:
    tilted = canvas(600)
    tilted.paste(astronaut().rotate(30, resample=Image.BICUBIC, fillcolor=(70, 110, 90)), (40, 40))
    (face,) = FaceStage(FaceSettings()).find(tilted)
    aligned = FaceStage(FaceSettings(align=True)).crops(tilted)[0]
    assert aligned.region.angle == pytest.approx(eye_angle(face))
    assert aligned.image.size == (256, 256)
    assert len(FaceStage(FaceSettings()).find(aligned.image)) == 1


def test_the_same_face_in_a_photo_gives_nearly_the_same_crop() -> None:
    """The reframing that defeats a whole-image model: the crop is what the model saw."""
    stage = FaceStage(FaceSettings())
    tight = astronaut().crop((100, 0, 356, 256))
    photo = canvas(640)
    photo.paste(tight, (300, 200))
    a = np.asarray(stage.crops(tight)[0].image, np.float32)
    b = np.asarray(stage.crops(photo)[0].image, np.float32)
    # The centre of the crop (the face itself) matches closely; only the margin differs.
    centre = slice(64, 192)
    assert np.abs(a[centre, centre] - b[centre, centre]).mean() < 12


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "I;16"])
def test_grey_and_cmyk_pictures(mode: str) -> None:
    from deepfake_detection.data.images import _to_rgb

    photo = astronaut()
    converted = photo.convert("L").convert("I;16") if mode == "I;16" else photo.convert(mode)
    assert len(FaceStage(FaceSettings()).find(_to_rgb(converted))) == 1


def test_no_face_tiny_images_and_dozens_of_faces() -> None:
    stage = FaceStage(FaceSettings())
    assert stage.crops(canvas(300)) == []
    assert stage.crops(Image.new("RGB", (3, 2))) == []
    rng = np.random.default_rng(1)
    crowd = face_picture(rng, 0, size=1200, faces=36)
    found = stage.find(crowd)
    assert len(found) >= 30
    assert all(math.isfinite(f.score) for f in found)
