"""The experiment presets, the model/freeze variants they sweep, and the Optuna search."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_train, make_dataset, run_cli
from deepfake_detection.config import config_dir, register_resolvers

VARIANTS = {
    "custom_cnn": ("CustomCNNDetector", {"name": "none"}),
    "mobilenet_frozen": ("MobileNetV2Detector", {"name": "backbone"}),
    "mobilenet_last1": ("MobileNetV2Detector", {"name": "last_n", "n": 1}),
    "mobilenet_last3": ("MobileNetV2Detector", {"name": "last_n", "n": 3}),
    "mobilenet_last5": ("MobileNetV2Detector", {"name": "last_n", "n": 5}),
    "mobilenet_full": ("MobileNetV2Detector", {"name": "none"}),
}


def compose_with_hydra(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def sweep_values(cfg, key: str) -> list[str]:
    return str(cfg.hydra.sweeper.params[key]).split(",")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_picks_its_model_and_freeze_depth(variant: str, tmp_path: Path) -> None:
    cfg = compose_train([f"variant={variant}"], tmp_path)
    detector, freeze = VARIANTS[variant]
    assert cfg.model._target_.endswith(detector)
    assert OmegaConf.to_container(cfg.model.freeze, resolve=True) == freeze


def test_seed_mobilenet_finetune_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=seed_mobilenet_finetune"], tmp_path)
    assert cfg.model._target_.endswith("MobileNetV2Detector") and cfg.model.pretrained
    assert cfg.freeze == {"name": "last_n", "n": 3}
    assert cfg.model.dropout == 0.2
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4


def test_recipe_mobilenet_full_trains_everything_at_160_px_with_deepfake_augmentation(
    tmp_path: Path,
) -> None:
    cfg = compose_train(["experiment=recipe_mobilenet_full"], tmp_path)
    assert cfg.model._target_.endswith("MobileNetV2Detector") and cfg.model.pretrained
    assert cfg.freeze == {"name": "none"} and cfg.data.image_size == 160
    assert cfg.augment.name == "deepfake" and cfg.data.augment.jpeg_p == 0.5
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 3e-4
    assert cfg.scheduler.T_max == cfg.trainer.max_epochs == 5
    basic = compose_train(["experiment=recipe_mobilenet_full", "augment=basic"], tmp_path)
    assert basic.augment.name == "basic" and basic.freeze == {"name": "none"}


def test_seed_frozen_vs_cnn_sweeps_both_models_with_early_stopping() -> None:
    cfg = compose_with_hydra(["experiment=seed_frozen_vs_cnn"])
    assert sweep_values(cfg, "variant") == ["mobilenet_frozen", "custom_cnn"]
    assert cfg.freeze.name == "backbone" and cfg.optimizer.lr == 1e-4
    assert cfg.early_stopping.monitor == "val/loss" and cfg.early_stopping.patience == 3
    job = compose_with_hydra(["experiment=seed_frozen_vs_cnn", "variant=custom_cnn"])
    assert job.model._target_.endswith("CustomCNNDetector") and job.freeze.name == "none"
    assert job.early_stopping.patience == 3


def test_compare_freeze_depth_sweeps_every_variant_and_compares() -> None:
    cfg = compose_with_hydra(["experiment=compare_freeze_depth"])
    assert sorted(sweep_values(cfg, "variant")) == sorted(VARIANTS)
    assert cfg.hydra.callbacks.compare._target_.endswith("CompareOnMultirunEnd")
    assert "compare_freeze_depth" in cfg.hydra.sweep.dir


def test_optuna_search_maximises_the_returned_validation_auroc() -> None:
    cfg = compose_with_hydra(["hparams_search=optuna"])
    assert cfg.optimized_metric == "val/auroc_best"
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper.storage is None and "optimizer.lr" in cfg.hydra.sweeper.params


@pytest.mark.slow
def test_optuna_search_runs_and_continues_from_its_storage(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 4, "valid": 2, "test": 2})
    storage = tmp_path / "optuna.db"
    args = [
        "hparams_search=optuna",
        f"data.root={root}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.widths=[4,8]",
        "trainer.max_epochs=1",
        f"hydra.sweeper.storage=sqlite:///{storage}",
        "hydra.sweeper.study_name=search",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    first = run_cli([*args, "hydra.sweeper.n_trials=2"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*args, "hydra.sweeper.n_trials=1"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Using an existing study" in second.stderr + second.stdout
    with sqlite3.connect(storage) as db:
        states = [row[0] for row in db.execute("SELECT state FROM trials")]
    assert states == ["COMPLETE"] * 3


def test_recipe_mobilenet_select_unseen_chooses_on_the_named_sources(tmp_path: Path) -> None:
    other = make_dataset(tmp_path / "other", {"test": 2})
    cfg = compose_train(
        ["experiment=recipe_mobilenet_select_unseen", f"data.select_on={other}"], tmp_path
    )
    assert cfg.data.image_size == 160 and cfg.augment.name == "deepfake" and cfg.face.name == "crop"
    assert cfg.checkpoint.monitor == cfg.early_stopping.monitor == "select/auroc_sources"
    assert cfg.checkpoint.mode == cfg.early_stopping.mode == "max"
    assert list(cfg.data.test_roots) == [str(other)] and cfg.trainer.max_epochs == 4
    assert cfg.scheduler.T_max == 4


def test_recipe_mobilenet_select_unseen_without_a_selection_set_names_the_key(
    tmp_path: Path,
) -> None:
    result = run_cli(["experiment=recipe_mobilenet_select_unseen"], tmp_path)
    assert result.returncode != 0
    assert "data.select_on" in result.stderr and "Traceback" not in result.stderr
