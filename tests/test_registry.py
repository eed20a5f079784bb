"""The model registry: adding an architecture is one module plus one YAML.

The module is this file (its `TinyDetector` registers itself); the YAML is written to a
config folder of the test's own, put on Hydra's search path. The new architecture then goes
through train → evaluate → export → serve like the built-in ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from torch import nn

from conftest import make_dataset, write_image
from deepfake_detection.commands import EVALUATE, TRAIN
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.detector.loading import rebuild_detector
from deepfake_detection.exporting.export import export
from deepfake_detection.models import registry
from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.serving.app import ServiceSettings, create_app

evaluate = EVALUATE.run  # the command: its config checked, then run
train = TRAIN.run  # the command: its config checked, then run

NAME = "tiny_test_net"


@registry.register(NAME)
class TinyDetector(BaseDetector):
    """One conv block, then pooling and a linear layer: the smallest detector there is."""

    def __init__(
        self,
        width: int = 4,
        freeze: dict | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = False,
    ) -> None:
        net = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1)),
        )
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    def feature_blocks(self) -> Sequence[nn.Module]:
        return [self.net[0]]

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.net[1][:2](features)

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net[1][2](pooled)


MODEL_YAML = f"""\
_convert_: all
_target_: {__name__}.TinyDetector
width: 4
channels_last: false
freeze: ${{freeze}}
optimizer: ${{optimizer}}
scheduler: ${{scheduler}}
"""


@pytest.fixture(scope="module")
def extra_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config folder holding only `model/<NAME>.yaml`: the architecture's one YAML."""
    folder = tmp_path_factory.mktemp("conf")
    (folder / "model").mkdir()
    (folder / "model" / f"{NAME}.yaml").write_text(MODEL_YAML)
    return folder


def compose_with(name: str, overrides: list[str], output_dir: Path, extra: Path):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            name,
            overrides=[
                f"hydra.searchpath=[file://{extra}]",
                f"paths.output_dir={output_dir}",
                "data.num_workers=0",
                *overrides,
            ],
        )


def test_the_registry_knows_the_built_in_architectures() -> None:
    names = registry.architectures()
    assert {"custom_cnn", "mobilenet_v2", NAME} <= names.keys()
    assert names["mobilenet_v2"].default_weights and names["custom_cnn"].default_weights is None
    target = "deepfake_detection.models.CustomCNNDetector"
    assert registry.for_target(target).name == "custom_cnn"
    assert registry.for_target("pathlib.Path.touch") is None
    # Where checkpoints written before the architectures' modules moved name their class.
    legacy = "deepfake_detection.models.mobilenet_v2.MobileNetV2Detector"
    assert registry.for_target(legacy).name == "mobilenet_v2"
    assert registry.for_target("elsewhere.MobileNetV2Detector") is None
    # An architecture from outside the package answers to its own path only.
    assert registry.for_target(f"{__name__}.TinyDetector").name == NAME
    assert registry.for_target("deepfake_detection.models.TinyDetector") is None
    assert registry.name_for_target("deepfake_detection.models.MobileNetV2Detector") == (
        "mobilenet_v2"
    )


def test_an_architecture_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="registered already"):

        @registry.register("custom_cnn")
        class Impostor(TinyDetector):
            pass


@pytest.mark.slow
def test_a_registered_architecture_trains_evaluates_exports_and_serves(
    tmp_path: Path, extra_configs: Path
) -> None:
    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 3, "test": 3})
    run_dir = tmp_path / "run"
    cfg = compose_with(
        "train",
        [
            f"model={NAME}",
            f"data.root={data}",
            "data.image_size=32",
            "data.batch_size=4",
            "trainer.max_epochs=1",
            "early_stopping=none",
        ],
        run_dir,
        extra_configs,
    )
    train(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["hparams"]["model"] == NAME
    best = run_dir / metrics["best/checkpoint"]
    checkpoint = torch.load(best, weights_only=True)
    assert isinstance(rebuild_detector(checkpoint, best), TinyDetector)

    evaluated = evaluate(
        compose_with("evaluate", [f"ckpt_path={run_dir}"], tmp_path / "eval", extra_configs)
    )
    assert evaluated["model"] == NAME and evaluated["data/images"] == 6
    assert evaluated["test/auroc"] == pytest.approx(metrics["test/auroc"], abs=1e-6)

    exported = export(
        compose_with(
            "export", [f"ckpt_path={run_dir}", "format=torch_export"], tmp_path / "x", extra_configs
        )
    )
    spec = json.loads((tmp_path / "x" / "model.json").read_text())
    assert spec["model"] == NAME and exported["max_abs_diff"] <= 1e-6

    image = write_image(tmp_path / "one.png", 1, np.random.default_rng(0))
    upload = [("files", (image.name, image.read_bytes(), "image/png"))]
    for source in (run_dir, Path(exported["model_file"])):
        served = load_detector(
            compose_with("serve", [f"ckpt_path={source}"], tmp_path / "serve", extra_configs)
        )
        with TestClient(create_app(served, ServiceSettings())) as client:
            info = client.get("/info").json()
            assert info["model"] == NAME and info["explain"]
            answer = client.post("/predict", files=upload)
            assert answer.status_code == 200, answer.text
            heatmap = client.post("/explain", files=upload)
            assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")
