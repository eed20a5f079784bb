from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.images import load_rgb
from deepfake_detection.data.transforms import eval_transform, train_transform
from deepfake_detection.errors import DatasetError


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.fixture
def odd_images(tmp_path: Path) -> dict[str, Path]:
    gradient = np.linspace(0, 255, 40 * 30).reshape(30, 40)
    palette = Image.fromarray(gradient.astype(np.uint8)).convert("P")
    return {
        "L": _save(tmp_path / "gray.png", Image.fromarray(gradient.astype(np.uint8))),
        "RGBA": _save(tmp_path / "rgba.png", Image.new("RGBA", (40, 30), (10, 20, 30, 0))),
        "P+transparency": _save(tmp_path / "pal.png", palette, transparency=0),
        "CMYK": _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (40, 30), (0, 50, 100, 0))),
        "I;16": _save(tmp_path / "deep.png", Image.fromarray((gradient * 200).astype(np.uint16))),
        "LA": _save(tmp_path / "la.png", Image.new("LA", (40, 30), (128, 255))),
    }


def test_every_mode_becomes_rgb(odd_images: dict[str, Path]) -> None:
    for mode, path in odd_images.items():
        image = load_rgb(path)
        assert image.mode == "RGB", mode
        assert image.size == (40, 30), mode


def test_sixteen_bit_images_are_rescaled_not_clipped(odd_images: dict[str, Path]) -> None:
    pixels = np.asarray(load_rgb(odd_images["I;16"]))
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) > 200


def test_fully_transparent_pixels_become_black(odd_images: dict[str, Path]) -> None:
    assert np.asarray(load_rgb(odd_images["RGBA"])).max() == 0


def test_dataset_yields_normalised_tensors_for_any_mode(odd_images: dict[str, Path]) -> None:
    samples = [(path, i % 2) for i, path in enumerate(odd_images.values())]
    for transform in (train_transform(24), eval_transform(24)):
        dataset = ImageFileDataset(samples, transform)
        for i in range(len(dataset)):
            image, label, index = dataset[i]
            assert index == i
            assert image.shape == (3, 24, 24) and image.dtype == torch.float32
            assert label.item() == samples[i][1]


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_text("this is not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg: cannot read image"):
        load_rgb(bad)
