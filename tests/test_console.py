"""What `python -m train` prints: each line once, no library noise, a short summary."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_dataset, run_cli

#: Lines libraries print that tell the user nothing; none may reach the console.
NOISE = (
    "Tip:",  # Lightning's advertisement
    "litlogger",
    "LeafSpec",  # a deprecation inside Lightning
    "_pytree",
    "No positive samples",  # torchmetrics on the one-class sanity-check batches
    "No negative samples",
    "FLOPs  ",  # Lightning's model summary table
    "┏",  # Lightning's test table
    "Test metric",
    "{'test/",  # the metrics dict
    "module(s) in eval mode",  # frozen BatchNorm is kept in eval mode on purpose
    "INFO:",  # Lightning's own console handler
    "TPU available: False",
    "`Trainer.fit` stopped",  # said by our own line, after the epoch's
)
STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


def repeated_messages(output: str) -> dict[str, int]:
    """Messages shown more than once, whatever their time stamps (rules such as `-----`
    around a multi-line message aside)."""
    lines = [STAMP.sub("", line) for line in output.splitlines()]
    messages = [line for line in lines if any(c.isalnum() for c in line)]
    return {message: n for message, n in Counter(messages).items() if n > 1}


PROGRESS = re.compile(r"epoch 1/1  step (\d+)/(\d+)  \d+ img/s  ETA \d+:\d\d:\d\d$")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(console output, run dir) of a short run on the demo set, output not a terminal."""
    cwd = tmp_path_factory.mktemp("console")
    result = run_cli(
        [
            f"data.demo_cache_dir={cwd / 'cache'}",
            "data.num_workers=0",
            "model=custom_cnn",
            "freeze=last_n",  # custom_cnn has 3 blocks: freezes nothing, which must be said
            "freeze.n=3",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=12",
            "progress.every_s=0",  # a progress line after every step
        ],
        cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = (cwd / "outputs" / "train").iterdir()
    return result.stdout + result.stderr, run_dir


@pytest.mark.slow
def test_no_line_is_printed_twice(demo_run: tuple[str, Path]) -> None:
    output, _ = demo_run
    assert repeated_messages(output) == {}


@pytest.mark.slow
def test_no_library_noise(demo_run: tuple[str, Path]) -> None:
    output, _ = demo_run
    assert [line for line in output.splitlines() if any(n in line for n in NOISE)] == []


@pytest.mark.slow
def test_a_warning_that_matters_still_shows_once(demo_run: tuple[str, Path]) -> None:
    output, run_dir = demo_run
    freeze = [line for line in output.splitlines() if "nothing is frozen" in line]
    assert len(freeze) == 1 and re.match(r"\d\d:\d\d:\d\d warning: freeze=last_n", freeze[0])
    assert "[WARNING] - freeze=last_n, freeze.n=3" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_progress_lines_count_steps_up_to_the_total(demo_run: tuple[str, Path]) -> None:
    output, _ = demo_run
    steps = [PROGRESS.search(line) for line in output.splitlines()]
    steps = [(int(m[1]), int(m[2])) for m in steps if m]
    assert [step for step, _ in steps] == list(range(1, 13))
    assert {total for _, total in steps} == {12}
    epoch_lines = [line for line in output.splitlines() if re.search(r"epoch 1/1  train ", line)]
    assert len(epoch_lines) == 1 and "val loss" in epoch_lines[0] and "auroc" in epoch_lines[0]
    ended = [line for line in output.splitlines() if "training ended" in line]
    assert ended and ended[0].endswith("training ended after epoch 1/1: max_epochs=1 reached")
    assert output.index(epoch_lines[0]) < output.index(ended[0])


@pytest.mark.slow
def test_the_run_ends_with_a_short_summary(demo_run: tuple[str, Path]) -> None:
    output, run_dir = demo_run
    tail = output[output.index("test metrics of the best checkpoint") :]
    lines = tail.splitlines()
    assert len(lines) <= 13
    assert re.search(r"\(epoch 1 of 1, val/auroc 0\.\d{4}\):$", lines[0])
    interval = r" \[[01]\.\d{4}, [01]\.\d{4}\]"  # a 95 % bootstrap interval
    assert re.match(
        rf"  600 images: acc 0\.\d{{4}}{interval}  precision .* F1 0\.\d{{4}}  \(Fake when",
        lines[1],
    )
    threshold = json.loads((run_dir / "metrics.json").read_text())["val/threshold"]
    at_val = rf"  at the validation threshold {threshold:.4g}: acc 0\.\d{{4}}{interval}  precision "
    assert re.match(at_val, lines[2]), lines[2]
    assert re.match(
        rf"  AUROC 0\.\d{{4}}{interval}  AP 0\.\d{{4}}{interval}  EER 0\.\d{{4}}$", lines[3]
    )
    assert re.match(r"  TPR at 1 % FPR [01]\.\d{4}, at 0\.1 % FPR [01]\.\d{4}$", lines[4])
    assert re.match(r"  at val_fpr:0\.01 \(threshold .*\): test FPR \d+\.\d\d %, TPR", lines[5])
    shown = f"outputs/train/{run_dir.name}"
    assert lines[6].startswith(f"run dir: {shown}/")
    assert f"tensorboard --logdir {shown}" in tail
    assert f"deepfake-evaluate ckpt_path={shown}" in tail
    assert f"deepfake-predict ckpt_path={shown} input=" in tail


@pytest.mark.slow
def test_the_log_file_keeps_the_full_record(demo_run: tuple[str, Path]) -> None:
    output, run_dir = demo_run
    record = (run_dir / "train.log").read_text()
    for line in output.splitlines():
        message = line[9:] if re.match(r"\d\d:\d\d:\d\d ", line) else line
        message = message.removeprefix("warning: ")
        assert message in record, line
    # Lightning's lines, those kept off the console too, with their logger and level.
    assert "[lightning.pytorch.utilities.rank_zero][INFO] - GPU available" in record
    assert "[INFO] - TPU available: False" in record


@pytest.mark.slow
def test_a_two_process_run_prints_each_line_once(tmp_path: Path) -> None:
    """DDP starts the command again in a second process, which must stay quiet."""
    root = make_dataset(tmp_path / "data", {"train": 8, "valid": 4, "test": 4})
    result = run_cli(
        [
            f"data.root={root}",
            "data.image_size=32",
            "data.batch_size=4",
            "data.num_workers=0",
            "model.widths=[4,8]",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "+trainer.strategy=ddp",
            "progress.every_s=0",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert repeated_messages(output) == {}
    assert "sync_dist=True" not in output  # torchmetrics results are reduced already
    lines = output.splitlines()
    assert sum("test metrics of the best checkpoint" in line for line in lines) == 1
    assert (
        sum(line.endswith("training ended after epoch 1/1: max_epochs=1 reached") for line in lines)
        == 1
    )
    [run_dir] = (tmp_path / "outputs" / "train").iterdir()
    assert "full record: metrics.json, train.log" in result.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["test/tp"] >= 0


def test_epoch_line_text() -> None:
    from deepfake_detection.training.progress import duration, epoch_metrics_text

    metrics = {"train/loss": 0.61234, "train/acc": 0.7, "val/loss": 0.5, "val/auroc": 0.81}
    assert epoch_metrics_text(metrics) == "train loss 0.612 acc 0.700 | val loss 0.500 auroc 0.810"
    metrics["val/auroc_best"] = 0.85
    assert epoch_metrics_text(metrics).endswith("auroc 0.810 (best 0.850)")
    assert duration(3725.4) == "1:02:05" and duration(float("nan")) == "?"


def test_end_reason_names_early_stopping_and_limits() -> None:
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

    from deepfake_detection.training.progress import end_reason

    stop = EarlyStopping(monitor="val/loss")
    trainer = SimpleNamespace(
        early_stopping_callbacks=[stop], max_steps=-1, global_step=40, max_epochs=10
    )
    trainer.current_epoch = 10
    assert end_reason(trainer) == "max_epochs=10 reached"
    stop.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
    stop.stopping_reason_message = (
        "Monitored metric val/loss did not improve in the last 3 records. Best score: 0.120."
        " Signaling Trainer to stop."
    )
    trainer.current_epoch = 6
    assert end_reason(trainer) == (
        "early stopping: Monitored metric val/loss did not improve in the last 3 records."
        " Best score: 0.120."
    )
    trainer.early_stopping_callbacks, trainer.max_steps = [], 40
    assert end_reason(trainer) == "max_steps=40 reached"


def test_console_format_and_file_only_records() -> None:
    import logging

    from deepfake_detection.console import FILE_ONLY, ConsoleFormatter, ConsoleOnly

    def record(level: int, message: str, **extra) -> logging.LogRecord:
        name = logging.getLevelName(level)
        return logging.makeLogRecord({"msg": message, "levelno": level, "levelname": name, **extra})

    formatter = ConsoleFormatter()
    assert re.fullmatch(r"\d\d:\d\d:\d\d hello", formatter.format(record(logging.INFO, "hello")))
    warned = formatter.format(record(logging.WARNING, "careful"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d warning: careful", warned)
    assert ConsoleOnly().filter(record(logging.INFO, "shown")) is True
    assert ConsoleOnly().filter(record(logging.INFO, "file only", **FILE_ONLY)) is False
    advert = record(logging.INFO, "💡 Tip: For seamless cloud logging ...")
    advert.name = "lightning.pytorch.utilities.rank_zero"
    assert ConsoleOnly().filter(advert) is False
