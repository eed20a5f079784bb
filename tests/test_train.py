"""End-to-end runs through the composed Hydra config, as `python -m train` does them."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.models import mobilenet_v2

from conftest import compose_train, make_dataset, make_tree
from deepfake_detection.commands import TRAIN
from deepfake_detection.models.architectures.custom_cnn import CustomCNN

train = TRAIN.run  # the command: its config checked, then run

pytestmark = pytest.mark.slow

FAST = ["data.image_size=32", "data.batch_size=4"]
TEST_KEYS = {f"test/{m}" for m in ("loss", "acc", "precision", "recall", "f1", "auroc")}


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    "model", ["model=custom_cnn", "model=mobilenet_v2 model.pretrained=false freeze=last_n"]
)
def test_fast_dev_run_for_each_model(tmp_path: Path, dataset: Path, model: str) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_train(
        [f"data.root={dataset}", *FAST, *model.split(), "+trainer.fast_dev_run=true"], run_dir
    )
    train(cfg)
    metrics = read_metrics(run_dir)
    assert metrics.keys() >= TEST_KEYS
    assert (run_dir / "model.pth").is_file()


def test_run_writes_metrics_checkpoints_weights_and_tensorboard(
    tmp_path: Path, dataset: Path
) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_train(
        [
            f"data.root={dataset}",
            *FAST,
            "model.widths=[4,8]",
            "trainer.max_epochs=2",
            "early_stopping=none",
        ],
        run_dir,
    )
    returned = train(cfg)
    metrics = read_metrics(run_dir)

    assert metrics.keys() >= TEST_KEYS
    assert all(0.0 <= metrics[k] <= 1.0 for k in TEST_KEYS - {"test/loss"})
    assert metrics["epochs"] == 2
    assert metrics["train_seconds"] > 0
    timing = metrics["timing"]
    assert [row["epoch"] for row in timing["epochs"]] == [1, 2]
    train_images = sum(1 for _ in (dataset / "Train").rglob("*.png"))
    assert all(row["train_images"] == train_images for row in timing["epochs"])
    assert all(row["train_s"] > 0 and row["val_s"] > 0 for row in timing["epochs"])
    assert timing["best_checkpoint_scoring_s"] > 0 and timing["fit_s"] >= sum(
        row["train_s"] + row["val_s"] for row in timing["epochs"]
    )
    assert metrics["best/monitor"] == "val/auroc"
    assert metrics["val/auroc_best"] == pytest.approx(metrics["best/score"])
    assert returned == metrics["val/auroc_best"]
    total = sum(p.numel() for p in CustomCNN([4, 8]).parameters())
    assert metrics["params/total"] == metrics["params/trainable"] == total

    best = run_dir / metrics["best/checkpoint"]
    assert best.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["config"]["model"]["widths"] == [4, 8]
    assert checkpoint["config"]["data"]["root"] == str(dataset)

    net = CustomCNN([4, 8])
    net.load_state_dict(torch.load(run_dir / "model.pth", weights_only=True))
    best_net = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()}
    assert all(torch.equal(v, best_net[k]) for k, v in net.state_dict().items())
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert saved.data.image_size == 32 and saved.model.freeze == {"name": "none"}
    assert saved == OmegaConf.create(checkpoint["config"])


def test_mobilenet_weights_load_into_bare_torchvision(tmp_path: Path, dataset: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_train(
        [
            f"data.root={dataset}",
            *FAST,
            "model=mobilenet_v2",
            "model.pretrained=false",
            "freeze=backbone",
            "+trainer.fast_dev_run=true",
        ],
        run_dir,
    )
    train(cfg)
    assert read_metrics(run_dir)["params/trainable"] == 1281
    net = mobilenet_v2(num_classes=1)
    net.load_state_dict(torch.load(run_dir / "model.pth", weights_only=True))


def test_same_seed_gives_same_metrics(tmp_path: Path, dataset: Path) -> None:
    def run(name: str, seed: int) -> dict:
        overrides = [f"data.root={dataset}", *FAST, "model.widths=[4,8]", f"seed={seed}"]
        # The strongest augmentation: every one of its draws must follow the seed too.
        overrides += ["trainer.max_epochs=1", "data.num_workers=1", "augment=strong"]
        train(compose_train(overrides, tmp_path / name))
        metrics = read_metrics(tmp_path / name)
        return {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))}

    first, again, other = run("a", 1), run("b", 1), run("c", 2)
    assert first == again
    assert first != other


def test_frozen_batchnorm_statistics_survive_a_real_fit(tmp_path: Path, dataset: Path) -> None:
    cfg = compose_train(
        [f"data.root={dataset}", *FAST, "model=mobilenet_v2", "model.pretrained=false"]
        + ["freeze=last_n", "freeze.n=1"],
        tmp_path,
    )
    model = instantiate(cfg.model)
    frozen = [m for m in model.net.features[:18].modules() if isinstance(m, nn.BatchNorm2d)]
    trained = [m for m in model.net.features[18].modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in frozen + trained]
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=instantiate(cfg.data))
    after = [m.running_mean for m in frozen + trained]
    assert all(torch.equal(b, a) for b, a in zip(before[: len(frozen)], after, strict=False))
    assert not torch.equal(before[-1], after[-1])


def test_compile_keeps_checkpoints_and_weights_loadable(tmp_path: Path, dataset: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_train(
        [
            f"data.root={dataset}",
            *FAST,
            "model.widths=[4]",
            "compile=true",
            "trainer.max_epochs=1",
            "early_stopping=none",
        ],
        run_dir,
    )
    train(cfg)
    assert read_metrics(run_dir)["test/auroc"] is not None
    net = CustomCNN([4])
    net.load_state_dict(torch.load(run_dir / "model.pth", weights_only=True))  # no _orig_mod.
    best = torch.load(run_dir / read_metrics(run_dir)["best/checkpoint"], weights_only=True)
    net_keys = {k for k in best["state_dict"] if k.startswith("net.")}
    assert net_keys == {f"net.{k}" for k in net.state_dict()}


def test_the_best_checkpoint_is_also_tested_on_other_roots(tmp_path: Path) -> None:
    """`data.test_roots`: a block per other dataset (at the validation threshold) and their
    mean, beside the run's own test metrics; `compare` shows both."""
    from deepfake_detection.commands import COMPARE

    own = make_dataset(tmp_path / "own", {"train": 8, "valid": 4, "test": 4})
    other = make_tree(tmp_path / "unseen", {"test/gan/0_real": 3, "test/gan/1_fake": 3}, seed=3)
    flat = make_tree(tmp_path / "flat", {"0_real": 2, "1_fake": 2}, seed=5)  # scored whole
    args = [
        f"data.root={own}",
        "data.image_size=32",
        "model.widths=[4,8]",
        "trainer.max_epochs=1",
        "early_stopping=none",
        f"data.test_roots=[{other},{flat}]",
    ]
    TRAIN.run(compose_train(args, tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    blocks = metrics["test_roots"]
    assert set(blocks) == {"unseen", "flat"}
    assert blocks["unseen"]["images"] == 6 and blocks["flat"]["images"] == 4
    mean = metrics["test_roots/mean"]
    assert mean["auroc"] == pytest.approx((blocks["unseen"]["auroc"] + blocks["flat"]["auroc"]) / 2)
    assert (tmp_path / "run" / "test_roots" / "unseen" / "per_source.csv").is_file()
    assert mean["roots"] == 2
    COMPARE.run([str(tmp_path / "run")])
    table = (tmp_path / "run" / "comparison.md").read_text()
    assert "other roots AUROC" in table and f"{mean['auroc']:.4f}" in table


def test_a_checkpoint_chosen_on_a_selection_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`data.select_on`: scored after every validation epoch, never trained on, and the
    checkpoint chosen on it when `checkpoint.monitor` says so."""
    own = make_dataset(tmp_path / "own", {"train": 8, "valid": 4, "test": 4})
    other = make_tree(tmp_path / "unseen", {"test/a/0_real": 3, "test/a/1_fake": 3}, seed=3)
    args = [
        f"data.root={own}",
        "data.image_size=32",
        "model.widths=[4,8]",
        "trainer.max_epochs=2",
        "early_stopping=none",
        f"data.select_on={other}",
        "checkpoint.monitor=select/auroc_sources",
    ]
    with caplog.at_level("INFO"):
        TRAIN.run(compose_train(args, tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best/monitor"] == "select/auroc_sources"
    assert 0 <= metrics["best/score"] <= 1
    assert caplog.text.count("select_on ") == 2  # once per validation epoch


def test_validation_per_source_and_a_checkpoint_on_their_mean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A per-source tree: validation logs each source and their mean, `val/auroc_sources`,
    which the checkpoint can follow; metrics.json keeps the kept checkpoint's table."""
    counts = {
        f"{split}/{source}/{cls}": n
        for split, n in (("train", 6), ("val", 4), ("test", 3))
        for source in ("gan", "swap")
        for cls in ("0_real", "1_fake")
    }
    root = make_tree(tmp_path / "pooled", counts, seed=5)
    args = [
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=4",
        "data.sampling=balanced",
        "model.widths=[4,8]",
        "trainer.max_epochs=2",
        "early_stopping=none",
        "checkpoint.monitor=val/auroc_sources",
    ]
    with caplog.at_level("INFO"):
        TRAIN.run(compose_train(args, tmp_path / "run"))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["best/monitor"] == "val/auroc_sources"
    table = metrics["val_per_source"]
    assert set(table["sources"]) == {"gan", "swap"}
    assert all(row["images"] == 8 for row in table["sources"].values())
    mean = (table["sources"]["gan"]["auroc"] + table["sources"]["swap"]["auroc"]) / 2
    assert table["mean"]["auroc"] == pytest.approx(mean)
    assert caplog.text.count("validation per source: gan ") == 2  # once per epoch
    events = tmp_path / "run" / "tensorboard"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = set()
    for file in events.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(file))
        accumulator.Reload()
        logged |= set(accumulator.Tags()["scalars"])
    assert {"val/auroc_sources", "val_sources/gan/auroc", "val_sources/swap/real_acc"} <= logged


def test_validation_without_sources_follows_its_own_auroc(tmp_path: Path, dataset: Path) -> None:
    """No source folders: `val/auroc_sources` is the validation AUROC itself."""
    args = [f"data.root={dataset}", *FAST, "model.widths=[4,8]", "trainer.max_epochs=1"]
    args += ["early_stopping=none", "checkpoint.monitor=val/auroc_sources"]
    TRAIN.run(compose_train(args, tmp_path / "run"))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["best/score"] == pytest.approx(metrics["val/auroc_best"], abs=1e-6)
    assert "val_per_source" not in metrics
