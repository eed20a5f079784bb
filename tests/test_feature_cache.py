"""`data.feature_cache=true`: stored frozen features train exactly like live ones, are keyed
on what they depend on, and a damaged store is rebuilt, never read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train, make_dataset, run_cli
from deepfake_detection.commands import TRAIN
from deepfake_detection.data.feature_store import DATA_FILE, META_FILE, CachedFeatureDataset
from deepfake_detection.training.cached_fit import attach_feature_cache, view_seed

train = TRAIN.run  # the command: its config checked, then run

TINY = ["data.image_size=32", "data.batch_size=4", "early_stopping=none"]
CNN = [*TINY, "model.widths=[4,8]"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", {"train": 6, "valid": 4, "test": 4})


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _stores(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["freeze=backbone", "freeze=last_n freeze.n=1"])
def test_a_cached_run_matches_an_uncached_one(tmp_path: Path, data: Path, freeze: str) -> None:
    """K=1 and a fixed transform: same batches, same dropout, so the same metrics and weights."""
    common = [f"data.root={data}", *CNN, *freeze.split(), "augment=none", "trainer.max_epochs=2"]
    live, cached = tmp_path / "live", tmp_path / "cached"
    train(compose_train(common, live))
    cache = tmp_path / "cache"
    # ram_mb=0: read through a memory map, the path of stores too big for memory.
    train(
        compose_train(
            [
                *common,
                "data.feature_cache=true",
                f"data.feature_cache_dir={cache}",
                "data.feature_cache_ram_mb=0",
            ],
            cached,
        )
    )
    expected, got = _metrics(live), _metrics(cached)
    compared = [k for k, v in expected.items() if k.startswith(("test/", "val/"))]
    compared = [k for k in compared if isinstance(expected[k], float)]
    assert "test/auroc" in compared and "val/auroc_best" in compared
    for key in compared:
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    assert got["timing"]["feature_cache_built"] == {"train": True, "val": True}
    assert len(_stores(cache)) == 2
    # The saved model is a normal one: the whole network, equal to the uncached run's.
    live_weights = torch.load(live / "model.pth", weights_only=True)
    cached_weights = torch.load(cached / "model.pth", weights_only=True)
    assert live_weights.keys() == cached_weights.keys()
    for name, tensor in live_weights.items():
        torch.testing.assert_close(cached_weights[name], tensor, rtol=0, atol=1e-5, msg=name)


def _attached(tmp_path: Path, data: Path, *overrides: str):
    cfg = compose_train(
        [
            f"data.root={data}",
            *(TINY if any(o.startswith("model=") for o in overrides) else CNN),
            "data.feature_cache=true",
            f"data.feature_cache_dir={tmp_path / 'cache'}",
            *overrides,
        ],
        tmp_path / "run",
    )
    torch.manual_seed(0)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    timing = attach_feature_cache(model, datamodule)
    return datamodule, model, timing


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float16", 2e-3)])
def test_validation_from_the_cache_scores_like_the_full_network(
    tmp_path: Path, data: Path, dtype: str, tolerance: float
) -> None:
    datamodule, model, _ = _attached(
        tmp_path,
        data,
        "model=mobilenet_v2",
        "model.pretrained=false",
        "freeze=last_n",
        "freeze.n=2",
        f"data.feature_cache_dtype={dtype}",
    )
    assert model.cached_depth == 17
    model.eval()
    with torch.no_grad():
        features, _, cached_index = next(iter(datamodule.val_dataloader()))
        from_cache = torch.sigmoid(model.features_to_logits(features, model.cached_depth))
        images, _, index = next(iter(datamodule.dataloader("val", training=False)))
        full = torch.sigmoid(model(images))
    assert torch.equal(cached_index, index)
    assert (from_cache - full).abs().max() <= tolerance


@pytest.mark.slow
def test_stores_are_reused_and_keyed_on_their_inputs(tmp_path: Path, data: Path) -> None:
    freeze = ("freeze=backbone", "augment=none")
    _, _, first = _attached(tmp_path, data, *freeze)
    assert first["feature_cache_built"] == {"train": True, "val": True}
    # A fixed transform does not depend on the seed: another seed reuses both stores.
    _, _, again = _attached(tmp_path, data, *freeze, "seed=7")
    assert again["feature_cache_built"] == {"train": False, "val": False}
    # Another image size, a touched file, another depth: new stores, the old ones untouched.
    _, _, size = _attached(tmp_path, data, *freeze, "data.image_size=48")
    assert size["feature_cache_built"] == {"train": True, "val": True}
    touched = next((data / "train" / "Fake").iterdir())
    os.utime(touched, ns=(0, 0))
    _, _, files = _attached(tmp_path, data, *freeze)
    assert files["feature_cache_built"] == {"train": True, "val": False}
    _, _, depth = _attached(tmp_path, data, "freeze=last_n", "freeze.n=1", "augment=none")
    assert depth["feature_cache_built"] == {"train": True, "val": True}
    # A random augmentation is drawn from the seed: its train store is the seed's own.
    _, _, seeded = _attached(tmp_path, data, "freeze=backbone", "augment=basic")
    _, _, other_seed = _attached(tmp_path, data, "freeze=backbone", "augment=basic", "seed=7")
    assert seeded["feature_cache_built"]["train"] and other_seed["feature_cache_built"]["train"]
    assert not other_seed["feature_cache_built"]["val"]


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "no_meta", "bad_meta"])
def test_a_damaged_store_is_rebuilt_not_read(
    tmp_path: Path, data: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = ("freeze=backbone", "augment=none")
    datamodule, _, _ = _attached(tmp_path, data, *overrides)
    good = np.array(datamodule.cached_datasets["train"].features)
    store = next(
        p
        for p in _stores(tmp_path / "cache")
        if json.loads((p / META_FILE).read_text())["split"] == "train"
    )
    features, meta = store / DATA_FILE, store / META_FILE
    if damage == "flip_a_byte":
        raw = bytearray(features.read_bytes())
        raw[-3] ^= 0xFF
        features.write_bytes(bytes(raw))
    elif damage == "truncate":
        features.write_bytes(features.read_bytes()[:-100])
    elif damage == "no_meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    # What a killed build leaves behind is removed by the next build of its key.
    leftover = store.parent / f".{store.name}.partial-99999"
    (leftover / "features.npy").parent.mkdir()
    (leftover / "features.npy").write_bytes(b"half")
    datamodule, _, timing = _attached(tmp_path, data, *overrides)
    assert timing["feature_cache_built"] == {"train": True, "val": False}
    assert not leftover.exists()
    assert f"feature cache {store} is not usable" in caplog.text
    np.testing.assert_array_equal(datamodule.cached_datasets["train"].features, good)


def test_augmented_views_are_fixed_per_image_and_cycle_over_epochs(
    tmp_path: Path, data: Path
) -> None:
    datamodule, _, _ = _attached(
        tmp_path, data, "freeze=backbone", "augment=basic", "data.feature_cache_views=2"
    )
    dataset: CachedFeatureDataset = datamodule.cached_datasets["train"]
    assert dataset.features.shape[0] == 2
    assert not np.array_equal(dataset.features[0], dataset.features[1])
    epochs = iter([0, 1, 2])
    dataset.current_epoch = lambda: next(epochs)
    first, second, third = (dataset[3][0] for _ in range(3))
    assert torch.equal(first, third) and not torch.equal(first, second)
    # View v of image i depends on (seed, i, v) alone.
    assert view_seed(42, 3, 1) == view_seed(42, 3, 1) != view_seed(42, 3, 0)
    assert view_seed(42, 3, 1) != view_seed(43, 3, 1)


def test_nothing_frozen_trains_from_images(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datamodule, model, timing = _attached(tmp_path, data, "freeze=none")
    assert timing == {} and model.cached_depth is None and not datamodule.cached_datasets
    assert "leaves no frozen block to cache" in caplog.text


@pytest.mark.slow
def test_resume_and_a_sweep_reuse_the_cache(tmp_path: Path, data: Path) -> None:
    cache = tmp_path / "cache"
    args = [
        f"data.root={data}",
        *CNN,
        "data.num_workers=0",
        "freeze=backbone",
        "augment=none",
        "data.feature_cache=true",
        f"data.feature_cache_dir={cache}",
    ]
    run_dir = tmp_path / "run"
    first = run_cli([*args, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    longer = run_cli([f"resume={run_dir}", "trainer.max_epochs=2"], tmp_path)
    assert longer.returncode == 0, longer.stderr[-3000:]
    metrics = _metrics(run_dir)
    assert metrics["epochs"] == 2
    assert metrics["timing"]["feature_cache_built"] == {"train": False, "val": False}
    assert "reused" in longer.stdout + longer.stderr

    sweep = run_cli(
        [
            "-m",
            *args,
            "trainer.max_epochs=1",
            "optimizer.lr=0.001,0.01",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    built = [
        _metrics(tmp_path / "sweep" / str(job))["timing"]["feature_cache_built"] for job in (0, 1)
    ]
    assert built == [{"train": False, "val": False}] * 2  # the run above built both
    assert len(_stores(cache)) == 2


def test_a_batch_of_stored_features_is_read_whole_and_equals_one_by_one() -> None:
    from torch.utils.data import DataLoader

    from deepfake_detection.data.feature_store import collate_batch
    from deepfake_detection.data.loader import SeededSample

    features = np.arange(2 * 10 * 3, dtype=np.float16).reshape(2, 10, 3)  # 2 views
    dataset = CachedFeatureDataset(features, [i % 2 for i in range(10)], lambda: 1)
    keys = [SeededSample(7, 123), 2, SeededSample(9, 5)]
    batched = collate_batch(dataset.__getitems__(keys))
    one_by_one = collate_batch([dataset[key] for key in keys])
    for whole, single in zip(batched, one_by_one, strict=True):
        assert torch.equal(whole, single)
    assert batched[0].dtype == torch.float32 and torch.equal(
        batched[0][0], torch.tensor(features[1, 7], dtype=torch.float32)
    )  # the epoch's view
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_batch)
    got = list(loader)
    assert [len(batch[2]) for batch in got] == [4, 4, 2]
    assert torch.equal(torch.cat([batch[2] for batch in got]), torch.arange(10))
    assert torch.equal(torch.cat([batch[1] for batch in got]), dataset.labels)
