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

from conftest import compose_train
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
