import re
from pathlib import Path

import pytest

from conftest import compose_train
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.errors import ConfigError

SMALL = {"train": 6, "valid": 3, "test": 3}


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
    images, labels, _ = next(iter(datamodule.train_dataloader()))
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


def test_balanced_sampling_draws_each_source_and_class_equally(tmp_path: Path) -> None:
    from collections import Counter

    from conftest import make_tree

    folders = {
        "train/big/0_real": 60,
        "train/big/1_fake": 60,
        "train/small/0_real": 6,
        "train/small/1_fake": 6,
        "test/big/0_real": 2,
        "test/big/1_fake": 2,
    }
    root = make_tree(tmp_path / "data", folders, size=16)

    def draws(sampling: str, epoch: int = 0) -> list:
        datamodule = DeepfakeDataModule(
            root=str(root), image_size=16, batch_size=4, num_workers=0, sampling=sampling
        )
        loader = datamodule.train_dataloader()
        loader.sampler.current_epoch = lambda: epoch
        return [(key, loader.dataset.samples[key.index]) for key in loader.sampler], datamodule

    picks, datamodule = draws("balanced")
    groups = Counter((datamodule.index.source_of(p), label) for _, (p, label) in picks)
    size = len(datamodule.index.splits["train"])  # 132, less the carved validation split
    assert len(picks) == size and all(size / 8 <= n <= size * 3 / 8 for n in groups.values())
    again, _ = draws("balanced")
    assert [key for key, _ in again] == [key for key, _ in picks]  # (seed, epoch) fixes it
    assert [key for key, _ in draws("balanced", epoch=1)[0]] != [key for key, _ in picks]
    seeds = Counter(key.seed for key, _ in picks)
    assert max(seeds.values()) == 1  # an image drawn twice gets two views
    shuffled, _ = draws("shuffle")
    assert sorted(key.index for key, _ in shuffled) == list(range(size))
    with pytest.raises(ConfigError, match="data.sampling=weighted: choose one of"):
        DeepfakeDataModule(root=str(root), sampling="weighted")
