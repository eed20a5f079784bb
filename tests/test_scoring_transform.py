"""Scoring's transform without torchvision gives exactly the tensors of `eval_transform`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import _geometry

from deepfake_detection.data import scoring_transform
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scoring_transform import ScoringTransform
from deepfake_detection.data.transforms import eval_transform, resize_and_crop


def pictures(seed: int, count: int = 12) -> list[Image.Image]:
    """Random RGB pictures, portrait, landscape and square, some smaller than the model's
    input (enlarged), one already at the resized size (not resampled at all)."""
    rng = np.random.default_rng(seed)
    sizes = [(int(rng.integers(12, 400)), int(rng.integers(12, 400))) for _ in range(count)]
    sizes += [(73, 73), (64, 80)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@pytest.mark.parametrize(("size", "fraction"), [(224, 0.875), (64, 0.875), (32, 1.0), (48, 0.6)])
def test_it_equals_the_torchvision_transform_value_for_value(size: int, fraction: float) -> None:
    ours, theirs = ScoringTransform(size, fraction), eval_transform(size, fraction)
    crop = v2.Compose([v2.ToImage(), *resize_and_crop(size, fraction)])
    for picture in pictures(size):
        expected = theirs(picture)
        got = ours(picture)
        assert got.dtype == torch.float32 and got.shape == (3, size, size)
        assert torch.equal(got, expected)
        assert torch.equal(ours.cropped(picture), crop(picture))
    grey = Image.fromarray(np.arange(40 * 90, dtype=np.uint8).reshape(40, 90) % 251)
    assert torch.equal(ours.cropped(grey), crop(grey))


def test_it_rounds_like_torchvision_where_uint8_is_resized_through_float(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CPUs without AVX2 (and not ARM) resize in float and round back: both sides must."""
    monkeypatch.setattr(scoring_transform, "native_uint8_resize", lambda: False)
    monkeypatch.setattr(_geometry, "_do_native_uint8_resize_on_cpu", lambda interpolation: False)
    ours, theirs = ScoringTransform(64, 0.875), eval_transform(64, 0.875)
    for picture in pictures(7, count=6):
        assert torch.equal(ours(picture), theirs(picture))


def test_preprocessing_scores_with_it() -> None:
    preprocessing = Preprocessing(image_size=40)
    picture = pictures(3, count=1)[0]
    assert isinstance(preprocessing.transform(), ScoringTransform)
    assert preprocessing.transform() is preprocessing.transform()  # built once per setting
    assert torch.equal(preprocessing.model_input(picture, "x.png"), eval_transform(40)(picture))
