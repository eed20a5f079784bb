"""`model=clip`: CLIP's image tower (OpenCLIP) with a linear head, tested with a tiny
randomly initialised ViT registered as an OpenCLIP model config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_config, make_dataset, patch_gradient
from deepfake_detection.errors import ConfigError, WeightsError

open_clip = pytest.importorskip("open_clip")

TINY = "tiny-test-clip"


@pytest.fixture(scope="module", autouse=True)
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("clip-config")
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    (folder / f"{TINY}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)


def test_the_tower_in_groups_and_its_embedding_into_one_logit() -> None:
    from deepfake_detection.models import ClipDetector

    detector = ClipDetector(arch=TINY, pretrained=None, freeze={"name": "backbone"})
    assert len(detector.feature_blocks()) == 4  # stem, 2 residual blocks, norm + projection
    trainable = {n for n, p in detector.net.named_parameters() if p.requires_grad}
    assert trainable == {"head.1.weight", "head.1.bias"}
    assert detector.frozen_depth() == 4
    logits = detector(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3,)
    # The cached features are the tower's embeddings; the head alone turns them into logits.
    prefix = detector.feature_prefix(4).eval()
    images = torch.randn(2, 3, 32, 32)
    detector.eval()
    with torch.no_grad():
        embedded = prefix(images)
        assert embedded.shape == (2, 16)
        assert torch.allclose(detector.features_to_logits(embedded, 4), detector(images))
    assert detector.net.weights_normalisation["mean"][0] == pytest.approx(0.481455, abs=1e-5)


def test_weights_from_a_local_checkpoint_and_clear_errors(tmp_path: Path, monkeypatch) -> None:
    from deepfake_detection.models import ClipDetector

    torch.manual_seed(1)
    source = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    detector = ClipDetector(arch=TINY, weights_path=str(path))
    for key, value in source.visual.state_dict().items():
        assert torch.equal(detector.net.visual.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="model.arch=ViT-Z-99: not an OpenCLIP model"):
        ClipDetector(arch="ViT-Z-99", pretrained=None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"model.weights_path=<a local OpenCLIP checkpoint>"):
        ClipDetector(arch=TINY, pretrained="laion2b_s34b_b79k")


@pytest.mark.slow
def test_a_linear_probe_on_cached_embeddings_trains_exports_and_explains(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from deepfake_detection.commands import EXPORT, TRAIN
    from deepfake_detection.detector.exported_model import load_detector
    from deepfake_detection.serving.app import ServiceSettings, create_app

    data = make_dataset(tmp_path / "data", {"train": 8, "valid": 4, "test": 4}, size=32)
    run_dir = tmp_path / "run"
    overrides = [
        f"data.root={data}",
        "experiment=clip_linear_probe",
        f"model.arch={TINY}",
        "model.pretrained=null",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        f"data.feature_cache_dir={tmp_path / 'features'}",
        "trainer.max_epochs=2",
    ]
    TRAIN.run(compose_config("train", overrides, run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["timing"]["feature_cache_built"]
    assert metrics["hparams"]["model"] == f"clip:{TINY}"
    EXPORT.run(
        compose_config("export", [f"ckpt_path={run_dir}", "format=onnx"], tmp_path / "export")
    )
    spec = json.loads((tmp_path / "export" / "model.json").read_text())
    assert spec["parity"]["max_abs_diff"] < 1e-4
    served = load_detector(compose_config("serve", [f"ckpt_path={run_dir}"], tmp_path / "s"))
    image = sorted((data / "test" / "Real").iterdir())[0]
    with TestClient(create_app(served, ServiceSettings())) as client:
        files = [("files", (image.name, image.read_bytes(), "image/png"))]
        assert client.post("/predict", files=files).status_code == 200
        heatmap = client.post("/explain", files=files)
        assert heatmap.status_code == 200, heatmap.text


def test_grad_cam_reads_patch_tokens_that_carry_gradient() -> None:
    from deepfake_detection.models import ClipDetector, registry
    from deepfake_detection.serving.explain import grad_cam

    torch.manual_seed(0)
    detector = ClipDetector(arch=TINY, pretrained=None)
    layer = registry.of(detector).gradcam_layer(detector)
    assert patch_gradient(detector, layer) > 0
    assert grad_cam(detector, torch.randn(3, 32, 32)).shape == (32, 32)
