"""`deepfake-predict`: unlabelled images in, P(Fake) and a Fake/Real call out."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import (
    BOMB_LIMIT,
    assert_names_a_bad_file,
    assert_skip_policy,
    compose_config,
    make_bad_files,
    run_cli,
)
from deepfake_detection.commands import PREDICT
from deepfake_detection.errors import DatasetError

predict = PREDICT.run  # the command: its config checked, then run


@pytest.fixture
def trained(tiny_run: Path) -> tuple[Path, Path]:
    """(run dir, dataset) of one finished run of the custom CNN."""
    return tiny_run, tiny_run.parent / "data"


def run_predict(overrides: list[str], output_dir: Path) -> dict:
    predict(compose_config("predict", overrides, output_dir))
    return json.loads((output_dir / "predict.json").read_text())


def read_rows(output_dir: Path) -> dict[str, dict[str, str]]:
    with open(output_dir / "predictions.csv", newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_scores_match_the_training_runs_own_test_scores(trained, tmp_path: Path) -> None:
    run_dir, dataset = trained
    out = tmp_path / "out"
    summary = run_predict([f"ckpt_path={run_dir}", f"input={dataset / 'test'}"], out)
    rows = read_rows(out)
    with open(run_dir / "predictions" / "test.csv", newline="") as handle:
        expected = {row["path"]: float(row["prob_fake"]) for row in csv.DictReader(handle)}
    assert rows.keys() == expected.keys() and summary["images"] == len(expected) == 12
    for path, prob in expected.items():
        assert float(rows[path]["prob_fake"]) == pytest.approx(prob, abs=1e-6)
        assert rows[path]["prediction"] == ("Fake" if prob > 0.5 else "Real")
    assert summary["fake"] + summary["real"] == 12 and summary["skipped"] == 0


def test_a_worker_hands_over_each_batch_once_and_scores_alike(trained, tmp_path: Path) -> None:
    """With DataLoader workers, the inputs travel stacked, once: the per-image records that
    come back with them carry no tensors (each would cost a shared-memory file)."""
    import torch

    from deepfake_detection.detector.file_scoring import _collate
    from deepfake_detection.detector.image_scoring import ImageInputs

    two_faces = ImageInputs([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], [{}, {}])
    batch, good, bad = _collate([(two_faces, 0, "", False), (None, 1, "unreadable", False)])
    assert batch.shape == (2, 3, 4, 4) and bad == [(1, "unreadable", False)]
    ((given, count, index),) = good
    assert given.inputs == [] and count == 2 and index == 0

    run_dir, dataset = trained
    rows = {}
    for workers in (0, 1):
        out = tmp_path / f"workers-{workers}"
        run_predict(
            [f"ckpt_path={run_dir}", f"input={dataset / 'test'}", f"data.num_workers={workers}"],
            out,
        )
        rows[workers] = {path: row["prob_fake"] for path, row in read_rows(out).items()}
    assert rows[0] == rows[1] and len(rows[0]) == 12


@pytest.mark.slow
def test_onnx_backend_scores_like_torch(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_dir, dataset = trained
    args = [f"ckpt_path={run_dir}", f"input={dataset / 'test'}", "threshold=val"]
    torch_summary = run_predict(args, tmp_path / "torch")
    onnx_summary = run_predict([*args, "backend=onnx"], tmp_path / "onnx")
    exported = list((tmp_path / "cache").rglob("model.onnx"))
    assert len(exported) == 1
    written = exported[0].stat().st_mtime_ns
    # The next run of the same checkpoint reuses that export, once it passes the check.
    with caplog.at_level(logging.INFO):
        again = run_predict([*args, "backend=onnx"], tmp_path / "again")
    assert "exported before" in caplog.text and exported[0].stat().st_mtime_ns == written
    assert again["threshold"] == onnx_summary["threshold"]
    # A damaged copy is exported again, not used.
    exported[0].write_bytes(b"not onnx")
    run_predict([*args, "backend=onnx"], tmp_path / "damaged")
    assert exported[0].stat().st_size > 1000
    expected, rows = read_rows(tmp_path / "torch"), read_rows(tmp_path / "onnx")
    assert rows.keys() == expected.keys() and len(rows) == 12
    for path, row in rows.items():
        assert float(row["prob_fake"]) == pytest.approx(
            float(expected[path]["prob_fake"]), abs=1e-4
        )
    assert onnx_summary["backend"] == "onnx"
    assert onnx_summary["threshold"] == torch_summary["threshold"]
    assert onnx_summary["images_per_s"] > 0


def test_threshold_decides_the_call(trained, tmp_path: Path) -> None:
    run_dir, dataset = trained
    image = dataset / "test" / "Fake" / "000.png"
    for threshold, call in ((0.0, "Fake"), (1.0, "Real")):
        out = tmp_path / str(threshold)
        summary = run_predict(
            [f"ckpt_path={run_dir}", f"input={image}", f"threshold={threshold}"], out
        )
        assert read_rows(out)[str(image)]["prediction"] == call
        assert summary["images"] == 1 and summary["threshold/rule"] == "fixed"
    stored = json.loads((run_dir / "metrics.json").read_text())["val/threshold"]
    summary = run_predict(
        [f"ckpt_path={run_dir}", f"input={image}", "threshold=val"], tmp_path / "v"
    )
    assert summary["threshold"] == pytest.approx(stored)


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_bad_files_are_skipped_and_listed(trained, tmp_path: Path, backend: str) -> None:
    run_dir, _ = trained
    files = make_bad_files(tmp_path / "inbox" / "nested")
    out = tmp_path / "out"
    summary = run_predict(
        [
            f"ckpt_path={run_dir}",
            f"input={tmp_path / 'inbox'}",
            f"data.max_image_pixels={BOMB_LIMIT}",
            f"backend={backend}",
        ],
        out,
    )
    rows = read_rows(out)
    bad = assert_skip_policy(files, set(rows), (out / "skipped_files.txt").read_text())
    assert summary["skipped"] == bad and summary["images"] == len(rows)


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_error_policy_stops_before_writing(trained, tmp_path: Path, backend: str) -> None:
    run_dir, _ = trained
    files = make_bad_files(tmp_path / "inbox")
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="data.on_bad_image=error stops here") as info:
        run_predict(
            [
                f"ckpt_path={run_dir}",
                f"input={tmp_path / 'inbox'}",
                f"data.max_image_pixels={BOMB_LIMIT}",
                "data.on_bad_image=error",
                f"backend={backend}",
            ],
            out,
        )
    assert_names_a_bad_file(files, str(info.value))
    assert not (out / "predictions.csv").exists()


@pytest.mark.slow
def test_cli_one_line_errors(trained, tmp_path: Path) -> None:
    run_dir, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\0")
    result = run_cli(
        [f"ckpt_path={run_dir}", f"input={empty}"], tmp_path, module="deepfake_detection.predict"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: input={empty}: no images or videos found")
    )
    missing = run_cli(
        [f"ckpt_path={run_dir}", "input=no/such/dir"], tmp_path, module="deepfake_detection.predict"
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "error: input=no/such/dir: no such file or directory"
    )
    copy = tmp_path / "copy"
    shutil.copytree(run_dir / "checkpoints", copy)
    ok = run_cli(
        [
            f"ckpt_path={next(copy.glob('epoch_*.ckpt'))}",
            f"input={run_dir.parent / 'data' / 'valid'}",
        ],
        tmp_path,
        module="deepfake_detection.predict",
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "12 image(s):" in ok.stdout
