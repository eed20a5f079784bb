import os
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from deepfake_detection.errors import WeightsError
from deepfake_detection.models import MobileNetV2Detector


@pytest.fixture
def imagenet_like_weights(tmp_path: Path) -> Path:
    """A torchvision MobileNetV2 state_dict with its 1000-class head, like the real file."""
    torch.manual_seed(7)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(mobilenet_v2().state_dict(), path)
    return path


def test_loads_local_weights_except_the_classifier(imagenet_like_weights: Path) -> None:
    model = MobileNetV2Detector(weights_path=str(imagenet_like_weights))
    source = torch.load(imagenet_like_weights, weights_only=True)
    state = model.net.state_dict()
    for key, value in source.items():
        if not key.startswith("classifier."):
            assert torch.equal(state[key], value), key
    assert state["classifier.1.weight"].shape == (1, 1280)


def test_weights_path_comes_from_the_environment(monkeypatch, imagenet_like_weights) -> None:
    from hydra.utils import instantiate

    from conftest import compose_train

    monkeypatch.setenv("MOBILENET_V2_WEIGHTS", str(imagenet_like_weights))
    cfg = compose_train(["model=mobilenet_v2"], imagenet_like_weights.parent)
    assert cfg.model.weights_path == str(imagenet_like_weights)
    model = instantiate(cfg.model)
    source = torch.load(imagenet_like_weights, weights_only=True)
    assert torch.equal(model.net.state_dict()["features.0.0.weight"], source["features.0.0.weight"])


def test_offline_download_failure_names_both_ways(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(MobileNet_V2_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(WeightsError) as info:
        MobileNetV2Detector(pretrained=True, weights_path=None)
    message = str(info.value)
    assert "model.pretrained=true: could not download" in message
    assert "model.weights_path=" in message and "MOBILENET_V2_WEIGHTS" in message


def test_a_tampered_download_cache_is_refused(tmp_path: Path, monkeypatch) -> None:
    # torch.hub only checks a file's hash when it downloads it, not when it is cached.
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cached = tmp_path / "hub" / "checkpoints" / Path(MobileNet_V2_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save({"features.0.0.weight": Payload()}, cached)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="refused to load the cached"):
        MobileNetV2Detector(pretrained=True, weights_path=None)
    assert not marker.exists()


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"model.weights_path=.*missing.pth: no such file"):
        MobileNetV2Detector(weights_path=str(tmp_path / "missing.pth"))


def test_wrong_architecture_weights(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match=r"does not match the MobileNetV2 backbone"):
        MobileNetV2Detector(weights_path=str(path))


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_text("hello")
    with pytest.raises(
        WeightsError, match=r"^model.weights_path=.*text.pth: not a readable checkpoint"
    ):
        MobileNetV2Detector(weights_path=str(path))
