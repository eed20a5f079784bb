import pytest
import torch
from torch import nn

from deepfake_detection.errors import ConfigError
from deepfake_detection.models import CustomCNNDetector, MobileNetV2Detector


def mobilenet(**freeze) -> MobileNetV2Detector:
    return MobileNetV2Detector(pretrained=False, freeze=freeze or None)


def trainable(model) -> set[str]:
    return {name for name, p in model.net.named_parameters() if p.requires_grad}


def test_none_trains_everything() -> None:
    model = mobilenet(name="none")
    assert trainable(model) == {name for name, _ in model.net.named_parameters()}


def test_backbone_trains_only_the_head() -> None:
    model = mobilenet(name="backbone")
    assert trainable(model) == {"classifier.1.weight", "classifier.1.bias"}
    assert model.parameter_counts()["params/trainable"] == 1281


@pytest.mark.parametrize("n", [0, 1, 3, 19])
def test_last_n_trains_the_top_n_feature_blocks(n: int) -> None:
    model = mobilenet(name="last_n", n=n)
    blocks = {f"features.{i}" for i in range(19 - n, 19)}
    expected = {
        name
        for name, _ in model.net.named_parameters()
        if name.startswith("classifier.") or ".".join(name.split(".")[:2]) in blocks
    }
    assert trainable(model) == expected


def test_last_zero_equals_backbone() -> None:
    assert trainable(mobilenet(name="last_n", n=0)) == trainable(mobilenet(name="backbone"))


def test_deeper_unfreezing_trains_more() -> None:
    counts = [
        mobilenet(name="last_n", n=n).parameter_counts()["params/trainable"] for n in (0, 1, 3)
    ]
    assert counts[0] < counts[1] < counts[2]


def test_custom_cnn_last_n_counts_its_conv_blocks() -> None:
    model = CustomCNNDetector(widths=[4, 8, 16], freeze={"name": "last_n", "n": 1})
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in trainable(model)} == {
        "features.2",
        "head.2",
        "head.5",
    }


@pytest.mark.parametrize("n", [-1, 20])
def test_n_out_of_range(n: int) -> None:
    with pytest.raises(
        ConfigError, match=rf"freeze.n={n} is out of range for mobilenet_v2: choose 0..19"
    ):
        mobilenet(name="last_n", n=n)


def test_unknown_freeze_name() -> None:
    with pytest.raises(
        ConfigError, match="freeze.name=partial: unknown; choose one of: none, backbone, last_n"
    ):
        mobilenet(name="partial")


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics() -> None:
    model = mobilenet(name="last_n", n=2)
    model.train()
    frozen_bn = [m for m in model.net.features[:17].modules() if isinstance(m, nn.BatchNorm2d)]
    trained_bn = [m for m in model.net.features[17:].modules() if isinstance(m, nn.BatchNorm2d)]
    assert frozen_bn and trained_bn
    assert not any(m.training for m in frozen_bn)
    assert all(m.training for m in trained_bn)
    before = [m.running_mean.clone() for m in frozen_bn]
    trained_before = trained_bn[0].running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, frozen_bn, strict=True))
    assert not torch.equal(trained_before, trained_bn[0].running_mean)


@pytest.mark.parametrize(("n", "frozen"), [(3, False), (2, True)])
def test_a_freeze_that_freezes_nothing_says_so(n: int, frozen: bool) -> None:
    model = CustomCNNDetector(widths=(8, 16, 32), freeze={"name": "last_n", "n": n})
    assert (trainable(model) != {k for k, _ in model.net.named_parameters()}) is frozen
    warning = model.freeze_warning()
    if frozen:
        assert warning is None
    else:
        assert warning.startswith("freeze=last_n, freeze.n=3: custom_cnn has 3 feature blocks")
        assert "same as freeze=none" in warning and "freeze.n=0..2" in warning
    assert mobilenet(name="last_n", n=19).freeze_warning().startswith("freeze=last_n, freeze.n=19")
    assert mobilenet(name="none").freeze_warning() is None
