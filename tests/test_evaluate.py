"""Run artifacts (figures, HParams, predictions) and `evaluate` round trips on tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import (
    BOMB_LIMIT,
    assert_names_a_bad_file,
    assert_skip_policy,
    compose_config,
    expected_kind,
    make_bad_files,
    make_dataset,
    make_tree,
    run_cli,
)
from deepfake_detection.commands import EVALUATE
from deepfake_detection.errors import UserInputError
from deepfake_detection.metrics.predictions import Predictions

evaluate = EVALUATE.run  # the command: its config checked, then run

RUN_FIGURES = {
    "confusion_matrix",
    "roc_curve",
    "pr_curve",
    "score_histogram",
    "learning_curves",
    "dataset_distribution",
    "confident_mistakes",
}
TEST_METRIC_NAMES = (
    "loss acc precision recall f1 auroc ap eer real_acc fake_acc balanced_acc ece "
    "tp fp tn fn threshold"
)
ALL_TEST_METRICS = {f"test/{name}" for name in TEST_METRIC_NAMES.split()}


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    """One finished two-epoch run of the custom CNN on a tiny generated set."""
    return tiny_run


def run_evaluate(overrides: list[str], output_dir: Path) -> dict:
    evaluate(compose_config("evaluate", overrides, output_dir))
    return json.loads((output_dir / "metrics.json").read_text())


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_dir_holds_every_metric_figure_and_prediction(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics.keys() >= ALL_TEST_METRICS | {"val/threshold", "hparams"}
    assert metrics["test/tp"] + metrics["test/fn"] == 6 and isinstance(metrics["test/tp"], int)
    assert metrics["hparams"]["model"] == "custom_cnn" and metrics["hparams"]["lr"] == 1e-4
    figures = {p.stem for p in (trained / "figures").glob("*.png") if is_png(p)}
    assert figures >= RUN_FIGURES
    predictions = Predictions.load_csv(trained / "predictions" / "test.csv")
    assert len(predictions) == 12 and int(predictions.targets.sum()) == 6
    assert all(Path(p).is_file() for p in predictions.paths)
    assert all(
        ("Fake" in p) == bool(y)
        for p, y in zip(predictions.paths, predictions.targets, strict=True)
    )


def test_tensorboard_has_figures_and_hparams(trained: Path) -> None:
    events = EventAccumulator(str(trained / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {f"figures/{name}" for name in RUN_FIGURES} <= set(events.Tags()["images"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "hp/val_auroc_best" in events.Tags()["scalars"]


def test_evaluate_reproduces_the_training_test_metrics(trained: Path, tmp_path: Path) -> None:
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    metrics = run_evaluate([f"ckpt_path={trained}"], tmp_path / "eval")
    for key in ALL_TEST_METRICS:
        assert metrics[key] == pytest.approx(trained_metrics[key], abs=1e-4), key
    assert metrics["threshold"] == 0.5 and metrics["threshold/rule"] == "fixed"
    assert metrics["checkpoint"] == str(trained / trained_metrics["best/checkpoint"])
    figures = {p.stem for p in (tmp_path / "eval" / "figures").glob("*.png") if is_png(p)}
    assert figures >= RUN_FIGURES - {"learning_curves"}


def test_evaluate_on_another_dataset_and_image_size(trained: Path, tmp_path: Path) -> None:
    # A bare Fake/ + Real/ folder of 40 px images, scored at 48 px.
    other = make_dataset(tmp_path / "other", {"": 5}, size=40, seed=7)
    metrics = run_evaluate(
        [f"ckpt_path={trained}", f"data.root={other}", "data.image_size=48"], tmp_path / "eval"
    )
    assert metrics["data/images"] == 10 and metrics["data/image_size"] == 48
    assert metrics["test/tp"] + metrics["test/fp"] + metrics["test/tn"] + metrics["test/fn"] == 10
    assert metrics["data/root"] == str(other)


@pytest.mark.slow  # several scoring passes: over a second
def test_evaluate_on_the_validation_split(trained: Path, tmp_path: Path) -> None:
    metrics = run_evaluate([f"ckpt_path={trained}", "data.split=valid"], tmp_path / "eval")
    assert metrics["data/split"] == "val" and "val/auroc" in metrics
    assert (tmp_path / "eval" / "predictions" / "val.csv").is_file()


def test_threshold_val_uses_the_stored_validation_threshold(trained: Path, tmp_path: Path) -> None:
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    metrics = run_evaluate([f"ckpt_path={trained}", "threshold=val"], tmp_path / "eval")
    assert metrics["threshold"] == pytest.approx(trained_metrics["val/threshold"])
    assert metrics["threshold/rule"] == "val"
    # Training reported the same numbers at that threshold, as `test/<name>@val`.
    for name in ("acc", "precision", "recall", "f1", "real_acc", "fake_acc", "balanced_acc"):
        assert trained_metrics[f"test/{name}@val"] == pytest.approx(metrics[f"test/{name}"]), name


@pytest.mark.slow  # several scoring passes: over a second
def test_threshold_val_is_chosen_on_validation_not_on_test(trained: Path, tmp_path: Path) -> None:
    # Shift the logit by +4: every score lands above 0.9, so at 0.5 everything is Fake, while
    # Youden's J on the validation split puts the threshold far above 0.5.
    best = json.loads((trained / "metrics.json").read_text())["best/checkpoint"]
    checkpoint = torch.load(trained / best, weights_only=True)
    checkpoint["state_dict"]["net.head.5.bias"] += 4.0
    shifted = tmp_path / "shifted.ckpt"  # outside the run dir: nothing stored to reuse
    torch.save(checkpoint, shifted)

    fixed = run_evaluate([f"ckpt_path={shifted}"], tmp_path / "fixed")
    chosen = run_evaluate([f"ckpt_path={shifted}", "threshold=val"], tmp_path / "val")
    assert fixed["test/real_acc"] == 0.0 and fixed["test/fake_acc"] == 1.0
    assert chosen["threshold"] > 0.8 and chosen["threshold/rule"] == "val"
    assert chosen["test/real_acc"] > 0.0
    assert chosen["test/auroc"] == pytest.approx(fixed["test/auroc"])


def test_evaluate_rejects_foreign_corrupt_and_missing_checkpoints(
    trained: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes((trained / "model.pth").read_bytes()[:200])
    cases = {
        foreign: "not a deepfake-detection checkpoint",
        corrupt: "not a readable checkpoint",
        tmp_path / "absent.ckpt": "no such file or directory",
    }
    for path, message in cases.items():
        with pytest.raises(UserInputError, match=message) as info:
            run_evaluate([f"ckpt_path={path}"], tmp_path / "eval")
        assert str(path) in str(info.value)


def test_evaluate_builds_nothing_a_checkpoint_config_names(trained: Path, tmp_path: Path) -> None:
    # weights_only keeps unpickling safe; the saved config must not smuggle in a call either.
    best = json.loads((trained / "metrics.json").read_text())["best/checkpoint"]
    marker = tmp_path / "config-payload-ran"
    payloads = {
        "nested": ("model", "dropout", {"_target_": "pathlib.Path.touch", "self": str(marker)}),
        "model target": ("model", "_target_", "pathlib.Path.touch"),
        "data target": ("data", "_target_", "pathlib.Path.touch"),
    }
    for name, (section, key, value) in payloads.items():
        checkpoint = torch.load(trained / best, weights_only=True)
        checkpoint["config"][section][key] = value
        crafted = tmp_path / f"{name}.ckpt"
        torch.save(checkpoint, crafted)
        with pytest.raises(UserInputError, match="refused") as info:
            run_evaluate([f"ckpt_path={crafted}"], tmp_path / "eval")
        assert str(crafted) in str(info.value)
        assert not marker.exists()


@pytest.mark.slow  # several scoring passes: over a second
def test_evaluating_the_train_split_is_deterministic(trained: Path, tmp_path: Path) -> None:
    # Scoring never augments, so the train split gives the same numbers twice.
    first = run_evaluate([f"ckpt_path={trained}", "data.split=train"], tmp_path / "a")
    second = run_evaluate([f"ckpt_path={trained}", "data.split=train"], tmp_path / "b")
    assert first["train/auroc"] == second["train/auroc"]
    assert first["train/ece"] == second["train/ece"]


def test_evaluate_reports_mismatched_class_folders_like_train(
    trained: Path, tmp_path: Path
) -> None:
    bad = make_dataset(tmp_path / "bad", {"test": 2}, classes=("Fake", "Genuine"))
    with pytest.raises(UserInputError, match=r"missing the Real/ class folder"):
        run_evaluate([f"ckpt_path={trained}", f"data.root={bad}"], tmp_path / "eval")


class _Payload:
    """Unpickling this runs `touch`; a safe loader must refuse before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_cli_refuses_a_malicious_checkpoint_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"config": {}, "state_dict": {}, "extra": _Payload(marker)}, evil)
    result = run_cli([f"ckpt_path={evil}"], tmp_path, module="deepfake_detection.evaluate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(evil) in lines[-1]
    assert "refused to load" in lines[-1] and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_cli_requires_a_checkpoint(tmp_path: Path) -> None:
    result = run_cli([], tmp_path, module="deepfake_detection.evaluate")
    assert result.returncode == 2 and "ckpt_path is required" in result.stderr
    assert not list(tmp_path.rglob("metrics.json"))


def test_run_dir_can_be_moved_and_still_evaluated(trained: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(trained, moved)
    metrics = run_evaluate([f"ckpt_path={moved}"], tmp_path / "eval")
    assert metrics["checkpoint"].startswith(str(moved))


def messy_test_split(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A test split holding every awkward file kind beside its clean Fake/Real images."""
    root = make_dataset(tmp_path / "messy", {"test": 3}, seed=5)
    return root, make_bad_files(root / "test" / "Fake")


def test_evaluate_skips_and_lists_every_bad_file_kind(trained: Path, tmp_path: Path) -> None:
    root, files = messy_test_split(tmp_path)
    out = tmp_path / "eval"
    metrics = run_evaluate(
        [f"ckpt_path={trained}", f"data.root={root}", f"data.max_image_pixels={BOMB_LIMIT}"], out
    )
    scored = set(Predictions.load_csv(out / "predictions" / "test.csv").paths)
    bad = assert_skip_policy(files, scored, (out / "skipped_files.txt").read_text())
    assert metrics["data/skipped"] == bad
    assert (
        metrics["data/images"]
        == len(scored)
        == 6 + sum(expected_kind(kind) == "ok" for kind in files)
    )


def test_evaluate_error_policy_names_a_bad_file_before_scoring(
    trained: Path, tmp_path: Path
) -> None:
    root, files = messy_test_split(tmp_path)
    out = tmp_path / "eval"
    args = [f"ckpt_path={trained}", f"data.root={root}", f"data.max_image_pixels={BOMB_LIMIT}"]
    with pytest.raises(UserInputError, match="data.on_bad_image=error") as info:
        run_evaluate([*args, "data.on_bad_image=error"], out)
    assert_names_a_bad_file(files, str(info.value))
    assert not (out / "metrics.json").exists()


def test_the_evaluation_logs_the_detectors_hyperparameters(trained: Path, tmp_path: Path) -> None:
    """TensorBoard's hparams.yaml of an evaluation holds the model's constructor arguments."""
    run_evaluate([f"ckpt_path={trained}"], tmp_path / "eval")
    logged = OmegaConf.load(tmp_path / "eval" / "tensorboard" / "hparams.yaml")
    assert logged.widths == [4, 8] and logged.freeze.name == "none"


def test_several_roots_at_once_one_block_each_and_their_mean(
    tiny_run: Path, tmp_path: Path
) -> None:
    own = tiny_run.parent / "data"
    other = make_tree(tmp_path / "other", {"test/gan_a/0_real": 3, "test/gan_a/1_fake": 3}, seed=4)
    args = [f"ckpt_path={tiny_run}", "threshold=val", f"data.test_roots=[{own},{other}]"]
    metrics = evaluate(compose_config("evaluate", args, tmp_path / "out"))
    assert list(metrics["roots"]) == ["data", "other"]
    blocks = metrics["roots"]
    assert blocks["data"]["data/images"] == 12 and blocks["other"]["data/images"] == 6
    assert blocks["data"]["threshold"] == blocks["other"]["threshold"] == metrics["threshold"]
    mean_auroc = (blocks["data"]["test/auroc"] + blocks["other"]["test/auroc"]) / 2
    assert metrics["mean"]["auroc"] == pytest.approx(mean_auroc)
    assert "per_source" in blocks["other"]  # the unseen root's own sources
    for name in ("data", "other"):
        folder = tmp_path / "out" / "roots" / name
        assert (folder / "metrics.json").is_file() and (
            folder / "predictions" / "test.csv"
        ).is_file()
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["mean"]["roots"] == 2
