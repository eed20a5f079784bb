import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from conftest import compose_train
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.demo import ensure_demo_dataset
from deepfake_detection.data.images import load_rgb
from deepfake_detection.errors import ConfigError

SMALL = {"train": 6, "valid": 3, "test": 3}


def test_demo_set_is_deterministic_and_discoverable(tmp_path: Path) -> None:
    first = ensure_demo_dataset(tmp_path / "a", sizes=SMALL)
    again = ensure_demo_dataset(tmp_path / "b", sizes=SMALL)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 2 * sum(SMALL.values())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    datamodule = DeepfakeDataModule(root=str(first), image_size=32, num_workers=0)
    assert datamodule.index.counts()["test"] == {"Real": 3, "Fake": 3}


def test_demo_set_is_reused_not_regenerated(tmp_path: Path) -> None:
    root = ensure_demo_dataset(tmp_path, sizes=SMALL)
    marker = root / "train" / "Fake" / "fake_00000.png"
    stamp = marker.stat().st_mtime_ns
    assert ensure_demo_dataset(tmp_path, sizes=SMALL) == root
    assert marker.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_demo_fakes_carry_a_high_frequency_signal(tmp_path: Path) -> None:
    root = ensure_demo_dataset(tmp_path, sizes={"test": 40})
    scores, labels = [], []
    for label, name in ((1, "Fake"), (0, "Real")):
        for path in sorted((root / "test" / name).glob("*.png")):
            gray = np.asarray(load_rgb(path), dtype=np.float64).mean(-1)
            checker = np.indices(gray.shape).sum(0) % 2 * 2 - 1  # energy at the Nyquist corner
            scores.append(abs((gray * checker).mean()))
            labels.append(label)
    assert binary_auroc(torch.tensor(scores), torch.tensor(labels)) > 0.9


def test_image_size_defaults_to_224_for_user_data_and_64_for_the_demo(tmp_path: Path) -> None:
    assert compose_train([], tmp_path).data.image_size == 64
    assert compose_train([f"data.root={tmp_path}"], tmp_path).data.image_size == 224
    assert (
        compose_train([f"data.root={tmp_path}", "data.image_size=96"], tmp_path).data.image_size
        == 96
    )


def test_datamodule_uses_the_demo_set_when_root_is_unset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("deepfake_detection.data.demo.DEMO_SIZES", SMALL)
    datamodule = DeepfakeDataModule(
        root=None, image_size=32, num_workers=0, demo_cache_dir=str(tmp_path)
    )
    assert datamodule.index.root.parent == tmp_path
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and set(labels.tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 0}, "data.image_size=0"),
        ({"batch_size": -4}, "data.batch_size=-4"),
        ({"num_workers": -1}, "data.num_workers=-1"),
        ({"crop_scale": [0.9, 0.5]}, "data.crop_scale="),
        ({"eval_crop_fraction": 1.5}, "data.eval_crop_fraction=1.5"),
    ],
)
def test_bad_data_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        DeepfakeDataModule(**kwargs)
