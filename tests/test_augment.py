"""The `augment` group: each option composes, each step acts, and a seed fixes every draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from conftest import compose_train
from deepfake_detection.config import check_group_choices
from deepfake_detection.data.augment import AUGMENT_RULES, AugmentSettings
from deepfake_detection.data.loader import SeededSample
from deepfake_detection.data.transforms import eval_transform, train_transform
from deepfake_detection.errors import ConfigError
from deepfake_detection.training.settings import validate_train_config

OPTIONS = ("basic", "none", "deepfake", "strong")


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    pixels[::2, ::2] = 255  # sharp, high-frequency detail for blur and JPEG to remove
    return Image.fromarray(pixels)


def settings(option: str, tmp_path: Path) -> AugmentSettings:
    cfg = compose_train([f"augment={option}"], tmp_path)
    validate_train_config(cfg)
    return instantiate(cfg.data).augment


def seeded(transform, image: Image.Image, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(image)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_composes_and_is_deterministic(
    option: str, image: Image.Image, tmp_path: Path
) -> None:
    augment = settings(option, tmp_path)
    assert augment.name == option
    transform = train_transform(32, augment=augment)
    first, again = seeded(transform, image, 1), seeded(transform, image, 1)
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again)
    if option == "none":  # the eval transform, draws nothing
        assert torch.equal(first, eval_transform(32)(image))
    else:
        assert not torch.equal(first, seeded(transform, image, 2))


def test_the_settings_keys_and_the_rules_agree(tmp_path: Path) -> None:
    keys = {f"augment.{name}" for name in AugmentSettings.__dataclass_fields__}
    assert keys == set(AUGMENT_RULES)
    strong = settings("strong", tmp_path)
    assert (strong.blur_p, strong.jpeg_p, strong.downscale_p, strong.noise_p) == (
        0.5,
        0.5,
        0.3,
        0.3,
    )
    assert settings("deepfake", tmp_path).jpeg_quality == (30, 100)
    assert AugmentSettings.from_config(None) == AugmentSettings()  # runs from before the group


@pytest.mark.parametrize(
    "step",
    [
        {"blur_p": 1.0, "blur_sigma": (2.0, 2.0)},
        {"jpeg_p": 1.0, "jpeg_quality": (30, 30)},
        {"jitter_p": 1.0, "brightness": 0.5},
        {"downscale_p": 1.0, "downscale_factor": (0.25, 0.25)},
        {"noise_p": 1.0, "noise_sigma": (0.05, 0.05)},
        {"flip_p": 1.0},
    ],
    ids=lambda step: next(iter(step)),
)
def test_each_step_changes_the_image(step: dict, image: Image.Image) -> None:
    plain = AugmentSettings(name="none", crop=False, flip_p=0.0)
    changed = AugmentSettings(**{**plain.__dict__, **step})
    before = seeded(train_transform(32, augment=plain), image, 0)
    after = seeded(train_transform(32, augment=changed), image, 0)
    assert before.shape == after.shape
    assert (after - before).abs().mean() > 0.01


def test_blur_fits_images_smaller_than_its_kernel() -> None:
    from deepfake_detection.data.augment import FittedGaussianBlur

    tiny = torch.randint(0, 255, (3, 6, 5), dtype=torch.uint8)
    blurred = FittedGaussianBlur((3.0, 3.0))(tiny)  # a 19-pixel kernel on a 6x5 image
    assert blurred.shape == tiny.shape and not torch.equal(blurred, tiny)


def test_blur_and_jpeg_remove_high_frequencies(image: Image.Image) -> None:
    plain = AugmentSettings(name="none", crop=False, flip_p=0.0)

    def detail(settings: AugmentSettings) -> float:
        pixels = seeded(train_transform(32, augment=settings), image, 0)
        return float((pixels[:, :, 1:] - pixels[:, :, :-1]).abs().mean())

    blurred = AugmentSettings(**{**plain.__dict__, "blur_p": 1.0, "blur_sigma": (1.5, 1.5)})
    compressed = AugmentSettings(**{**plain.__dict__, "jpeg_p": 1.0, "jpeg_quality": (10, 10)})
    assert detail(blurred) < 0.5 * detail(plain)
    assert detail(compressed) < detail(plain)


def test_a_datamodule_image_depends_on_its_seed_only(tmp_path: Path, dataset: Path) -> None:
    """The per-image seed fixes every draw, whatever ran before in the process."""
    cfg = compose_train([f"data.root={dataset}", "data.image_size=32", "augment=strong"], tmp_path)
    train_set = instantiate(cfg.data).dataset("train")
    first = train_set[SeededSample(3, 1234)][0]
    torch.rand(100)  # other draws in between change nothing
    assert torch.equal(first, train_set[SeededSample(3, 1234)][0])
    assert not torch.equal(first, train_set[SeededSample(3, 4321)][0])


def test_unknown_option_and_bad_values_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^augment=heavy: unknown augment option; choose one"):
        check_group_choices(["augment=heavy"])
    cfg = compose_train(["augment=deepfake", "augment.jpeg_quality=[90,30]"], tmp_path)
    with pytest.raises(ConfigError, match=r"^augment.jpeg_quality=\[90, 30\]: must be a list"):
        validate_train_config(cfg)
    with pytest.raises(ConfigError, match=r"^augment.blur: not an augment key"):
        AugmentSettings.from_config({"blur": 0.5})
