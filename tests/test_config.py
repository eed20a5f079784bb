import pytest

from conftest import compose_train
from deepfake_detection.config import check_group_choices
from deepfake_detection.errors import ConfigError, DatasetError, one_line


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=custom_cnn"],
        ["model='mobilenet_v2'"],
        ["model=custom_cnn,mobilenet_v2", "freeze=last_n"],
        ["model=glob(*)"],
        ["scheduler=null"],
        ["data.root=somewhere", "trainer.max_epochs=3", "+trainer.fast_dev_run=true"],
    ],
)
def test_valid_group_overrides_pass(overrides: list[str]) -> None:
    check_group_choices(overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=resnet"],
            "model=resnet: unknown model option; choose one of: "
            "clip, custom_cnn, mobilenet_v2, timm",
        ),
        (["model=custom_cnn,resnet"], "model=resnet: unknown model option"),
        (["early_stopping=val_acc"], "choose one of: none, val_auroc, val_loss"),
        (["scheduler=onecycle"], "choose one of: cosine, none, plateau, step"),
    ],
)
def test_unknown_group_options_are_named_with_the_choices(overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_group_choices(overrides)


@pytest.mark.parametrize(
    ("monitor", "mode"), [("val/auroc", "max"), ("val/loss", "min"), ("val/f1", "max")]
)
def test_checkpoint_mode_follows_the_monitored_metric(tmp_path, monitor: str, mode: str) -> None:
    cfg = compose_train([f"checkpoint.monitor={monitor}"], tmp_path)
    assert cfg.checkpoint.mode == mode


def test_one_line_unwraps_errors_raised_in_dataloader_workers() -> None:
    wrapped = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "deepfake_detection.errors.DatasetError: data/a.jpg: cannot read image (truncated)\n"
    )
    assert one_line(wrapped) == "data/a.jpg: cannot read image (truncated)"
    assert one_line(DatasetError("plain message")) == "plain message"
