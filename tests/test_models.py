from functools import partial

import pytest
import torch
from torch import nn

from deepfake_detection.errors import ConfigError
from deepfake_detection.models import CustomCNNDetector, MobileNetV2Detector, TimmDetector

MODELS = {
    "custom_cnn": lambda **kw: CustomCNNDetector(widths=[8, 16], hidden_units=16, **kw),
    "mobilenet_v2": lambda **kw: MobileNetV2Detector(pretrained=False, **kw),
    "timm_cnn": lambda **kw: TimmDetector(name="test_resnet", pretrained=False, **kw),
    "timm_vit": lambda **kw: TimmDetector(name="test_vit", pretrained=False, **kw),
}


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_one_logit_per_image_and_backward_reaches_trainable_params(name) -> None:
    model = MODELS[name](freeze={"name": "last_n", "n": 1})
    model.train()
    images, targets = torch.randn(4, 3, 32, 32), torch.tensor([0.0, 1.0, 1.0, 0.0])
    logits = model(images)
    assert logits.shape == (4,)
    model.criterion(logits, targets).backward()
    for pname, param in model.net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, pname
        else:
            assert param.grad is None, pname


@pytest.mark.parametrize("name", MODELS)
def test_optimizer_only_gets_trainable_parameters(name) -> None:
    model = MODELS[name](freeze={"name": "backbone"}, optimizer=partial(torch.optim.SGD, lr=0.1))
    optimizer = model.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}


def test_scheduler_is_attached_and_monitors_val_loss() -> None:
    model = MODELS["custom_cnn"](
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=1),
    )
    config = model.configure_optimizers()
    assert isinstance(
        config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau
    )
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_mobilenet_head_is_gap_dropout_one_logit() -> None:
    model = MobileNetV2Detector(pretrained=False, dropout=0.3)
    dropout, linear = model.net.classifier
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.3
    assert (linear.in_features, linear.out_features) == (1280, 1)


def test_custom_cnn_is_conv_relu_maxpool_blocks() -> None:
    model = CustomCNNDetector(widths=[4, 8, 16])
    assert len(model.feature_blocks()) == 3
    for block, width in zip(model.feature_blocks(), [4, 8, 16], strict=True):
        conv, relu, pool = block
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == width
        assert isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"widths": []}, "model.widths"), ({"dropout": 1.5}, "model.dropout")],
)
def test_bad_model_arguments_name_the_key(kwargs, key) -> None:
    with pytest.raises(ConfigError, match=key):
        CustomCNNDetector(**kwargs)
