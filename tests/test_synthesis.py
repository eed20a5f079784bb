"""Synthetic fakes (`synth`): self-blended and up-sampled faces, where they enter a training
split, and that a run with them is deterministic and shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import astronaut, make_face_dataset, train_face_run
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.loader import SeededSample
from deepfake_detection.data.synthesis.blending import blend_mask, landmark_outline, self_blend
from deepfake_detection.data.synthesis.mixing import SYNTHETIC, Synthesizer
from deepfake_detection.data.synthesis.settings import SynthSettings
from deepfake_detection.data.synthesis.upsampling import UPSAMPLERS, upsample_fake
from deepfake_detection.errors import ConfigError
from deepfake_detection.faces.settings import FaceSettings

FACE = np.asarray(astronaut().crop((100, 0, 356, 256)))
BOX = (78.0, 62.0, 95.0, 115.0)  # the astronaut's face in FACE


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_a_blended_face_differs_only_inside_its_mask(with_landmarks: bool) -> None:
    landmarks = _astronaut_face().landmarks if with_landmarks else None
    for seed in range(6):
        blended, mask = self_blend(FACE, BOX, np.random.default_rng(seed), landmarks)
        changed = np.abs(blended.astype(int) - FACE).sum(axis=2) > 0
        assert changed.any()
        assert not (changed & (mask == 0)).any()
        assert mask.max() <= 1 and mask[0, 0] == 0  # the corner is far from the face


def _astronaut_face():
    from deepfake_detection.faces.stage import FaceStage

    return FaceStage(FaceSettings(min_size=8)).find(Image.fromarray(FACE))[0]


def test_the_mask_follows_the_landmarks_of_a_turned_head() -> None:
    """The hull is laid along the face's own axes: the same draw on a face turned a quarter
    turn gives the same mask turned with it, and it covers the eyes, nose and mouth."""
    face = _astronaut_face()
    points = np.asarray(face.landmarks)
    mask = blend_mask(FACE.shape[:2], face.box, np.random.default_rng(3), face.landmarks)
    assert all(mask[int(y), int(x)] > 0 for x, y in points)
    # (x, y) -> (H - 1 - y, x) is np.rot90(image, -1), a quarter turn clockwise.
    turned = [(FACE.shape[0] - 1 - y, x) for x, y in points]
    x, y, w, h = face.box
    turned_box = (FACE.shape[0] - y - h, x, h, w)
    rng = np.random.default_rng(3)
    turned_mask = blend_mask(FACE.shape[:2][::-1], turned_box, rng, tuple(turned))
    overlap = np.minimum(np.rot90(mask, -1), turned_mask).sum() / turned_mask.sum()
    assert overlap > 0.95
    # Outline points drawn from the same seed lie on the turned face's axes.
    outline = landmark_outline(face.landmarks, np.random.default_rng(5))
    turned_outline = landmark_outline(tuple(turned), np.random.default_rng(5))
    expected = np.stack([FACE.shape[0] - 1 - outline[:, 1], outline[:, 0]], axis=1)
    assert np.allclose(turned_outline, expected, atol=1e-6)


def test_the_synthesizer_blends_along_the_detected_landmarks() -> None:
    box, landmarks = Synthesizer(SynthSettings()).face_of(Image.fromarray(FACE))
    assert landmarks is not None and len(landmarks) == 5
    x, y, w, h = box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in landmarks)


def test_same_seed_same_fake() -> None:
    synthesizer = Synthesizer(SynthSettings(name="sbi+upsample"))
    image = Image.fromarray(FACE)
    a, info_a = synthesizer.make(image, 7)
    b, info_b = synthesizer.make(image, 7)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and info_a["family"] == info_b["family"]
    others = [np.asarray(synthesizer.make(image, seed)[0]) for seed in range(8)]
    assert any(not np.array_equal(np.asarray(a), other) for other in others)
    assert {synthesizer.make(image, s)[1]["family"] for s in range(12)} == {"sbi", "upsample"}


def test_every_upsampling_keeps_the_size_and_leaves_a_trace() -> None:
    seen = set()
    for seed in range(40):
        fake, how = upsample_fake(FACE, np.random.default_rng(seed))
        seen.add(how)
        assert fake.shape == FACE.shape and fake.dtype == np.uint8
        assert not np.array_equal(fake, FACE)
        if how == "nearest":  # each 2x2 (or 4x4) block holds one value
            assert np.array_equal(fake[0:254:2], fake[1:255:2])
    assert seen == set(UPSAMPLERS)


def test_how_synthetic_fakes_enter_a_split() -> None:
    samples = [(Path(f"r{i}.png"), 0) for i in range(4)] + [
        (Path(f"f{i}.png"), 1) for i in range(4)
    ]
    every = Synthesizer(SynthSettings(ratio=1.0))
    plan = every.plan(samples)
    assert plan == samples
    chosen = [every.choose(plan, position, seed=position) for position in range(8)]
    assert [label for _, label in chosen] == [0] * 4 + [SYNTHETIC] * 4
    assert all(path.name.startswith("r") for path, _ in chosen[4:])
    none = Synthesizer(SynthSettings(ratio=0.0))
    none.plan(samples)
    assert [none.choose(samples, p, seed=p)[1] for p in range(8)] == [0] * 4 + [1] * 4
    only = Synthesizer(SynthSettings(only=True))
    assert [label for _, label in only.plan(samples)] == [0] * 4 + [SYNTHETIC] * 4
    # About `ratio` of the fakes, drawn afresh per seed (that is, per epoch).
    half = Synthesizer(SynthSettings(ratio=0.5))
    half.plan(samples)
    draws = [half.choose(samples, 5, seed)[1] == SYNTHETIC for seed in range(400)]
    assert 0.4 < np.mean(draws) < 0.6


def test_a_training_item_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    root = make_face_dataset(tmp_path / "data", {"Train": 3, "Validation": 1, "Test": 1})
    real = sorted((root / "Train" / "Real").iterdir())
    fake = sorted((root / "Train" / "Fake").iterdir())
    samples = [(p, 0) for p in real] + [(p, 1) for p in fake]
    synthesizer = Synthesizer(SynthSettings(name="sbi", only=True))
    dataset = ImageFileDataset(
        synthesizer.plan(samples),
        lambda image: torch.from_numpy(np.asarray(image).copy()),
        synthesizer=synthesizer,
    )
    assert len(dataset) == 6  # three reals, each also a synthetic fake
    first, label, _ = dataset[SeededSample(4, 123)]
    again, _, _ = dataset[SeededSample(4, 123)]
    assert label == 1 and torch.equal(first, again)
    original, real_label, _ = dataset[SeededSample(1, 123)]
    assert real_label == 0 and not torch.equal(first, original)


def test_synthetic_fakes_cannot_come_from_stored_features() -> None:
    with pytest.raises(ConfigError, match="data.feature_cache=true: synth=sbi makes new fakes"):
        DeepfakeDataModule(synth={"name": "sbi", "ratio": 0.5, "only": False}, feature_cache=True)
    assert SynthSettings.from_config({"name": "none"}) is None
    assert Synthesizer(SynthSettings(), FaceSettings(margin=2.0)).face_box(
        Image.new("RGB", (100, 100))
    ) == (25.0, 25.0, 50.0, 50.0)


@pytest.mark.slow
def test_a_run_trains_from_real_faces_alone_and_shows_its_fakes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_face_dataset(tmp_path / "data")
    with caplog.at_level("INFO"):
        run = train_face_run(root, tmp_path / "run", "synth=sbi+upsample", "synth.only=true")
    figure = run / "figures" / "synthetic_fakes.png"
    assert figure.is_file() and Image.open(figure).size[1] > 400
    assert "synth: sbi+upsample: every fake (synth.only)" in caplog.text
