"""`logger=`: TensorBoard (the default), CSV, MLflow and W&B offline, or several at once; the
metrics, the hyperparameters with the final metrics and the figures reach each that can
take them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from conftest import compose_config, make_dataset

pytestmark = pytest.mark.slow


def train_with(logger: str, tmp_path: Path, *extra: str) -> Path:
    from deepfake_detection.commands import TRAIN

    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 4, "test": 4})
    run_dir = tmp_path / "run"
    overrides = [
        f"data.root={data}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.widths=[4,8]",
        "trainer.max_epochs=2",
        "early_stopping=none",
        f"logger={logger}",
        *extra,
    ]
    TRAIN.run(compose_config("train", overrides, run_dir))
    return run_dir


def test_csv_keeps_the_curves_and_the_hyperparameters(tmp_path: Path) -> None:
    run_dir = train_with("csv", tmp_path)
    with open(run_dir / "csv" / "version_0" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(1 for row in rows if row.get("val/auroc")) == 2  # one per epoch
    assert any(row.get("hp/test_auroc") for row in rows)  # the final metrics
    hparams = yaml.safe_load((run_dir / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["summary/model"] == "custom_cnn" and hparams["summary/max_epochs"] == 2
    assert not (run_dir / "tensorboard").exists()


def test_mlflow_gets_metrics_parameters_and_figures(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{store}")
    train_with("mlflow", tmp_path)
    runs = [p for p in store.glob("*/*") if (p / "meta.yaml").is_file()]
    assert len(runs) == 1
    run = runs[0]
    assert (run / "metrics" / "val" / "auroc").is_file()
    assert (run / "metrics" / "hp" / "test_auroc").is_file()
    assert (run / "params" / "summary" / "model").read_text() == "custom_cnn"
    figures = {p.name for p in (run / "artifacts" / "figures").iterdir()}
    assert {"roc_curve.png", "confusion_matrix.png", "learning_curves.png"} <= figures


def test_wandb_offline_keeps_the_run_on_disk(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = train_with("wandb", tmp_path)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    media = list(offline[0].rglob("*.png"))
    assert any("roc_curve" in p.name for p in media)


def test_several_loggers_at_once(tmp_path: Path) -> None:
    run_dir = train_with("many", tmp_path)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()
