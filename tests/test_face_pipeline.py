"""The face stage in every path, end to end, with the real detector on real faces: a run
trained with face=crop, then evaluate, robustness, predict, export and serve from it."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import (
    astronaut,
    compose_config,
    face_picture,
    make_face_dataset,
    train_face_run,
)
from deepfake_detection.commands import EVALUATE, EXPORT, PREDICT, ROBUSTNESS
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.errors import DatasetError
from deepfake_detection.serving.app import ServiceSettings, create_app

pytestmark = pytest.mark.slow  # training runs

ONE_JPEG = ["~grid.blur", "~grid.resize", "~grid.noise", "grid.jpeg=[50]"]


@pytest.fixture(scope="module")
def face_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("face_run")
    return train_face_run(make_face_dataset(root / "data"), root / "run")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo with one small face, a group of four, a picture without a face."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(7)
    photo = Image.new("RGB", (640, 480), (60, 90, 120))
    photo.paste(astronaut().resize((160, 160)), (400, 260))
    paths = {
        "photo": folder / "photo.jpg",
        "group": folder / "group.png",
        "empty": folder / "empty.png",
    }
    photo.save(paths["photo"], quality=92)
    face_picture(rng, 1, size=400, faces=4).save(paths["group"])
    Image.new("RGB", (200, 150), (30, 140, 60)).save(paths["empty"])
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_crops_once_and_records_the_stage(face_run: Path, tmp_path: Path) -> None:
    config = (face_run / ".hydra" / "config.yaml").read_text()
    assert "name: crop" in config and "crop_size: 64" in config
    store = next((face_run.parent / "face-cache").iterdir())
    crops = list(store.rglob("*.png"))
    assert len(crops) == 24  # every image of the 6/3/3 per class dataset, once
    assert all(Image.open(c).size == (64, 64) for c in crops[:3])
    before = {c: c.stat().st_mtime_ns for c in crops}
    train_face_run(face_run.parent / "data", tmp_path / "again")  # a second run reuses them
    assert {c: c.stat().st_mtime_ns for c in store.rglob("*.png")} == before
    assert json.loads((face_run / "metrics.json").read_text())["hparams"]["face"] == "crop"


def test_faceless_images_are_counted_skipped_or_stop(tmp_path: Path) -> None:
    root = make_face_dataset(tmp_path / "data")
    Image.new("RGB", (128, 128), (20, 120, 40)).save(root / "Train" / "Real" / "plain.png")
    run = train_face_run(root, tmp_path / "skip", "face.on_missing=skip")
    skipped = (run / "skipped_files.txt").read_text()
    assert "plain.png" in skipped and "no face found" in skipped
    with pytest.raises(DatasetError, match=r"plain.png: no face found.*face.on_missing=error"):
        train_face_run(root, tmp_path / "error", "face.on_missing=error")


def test_evaluate_and_robustness_crop_as_trained(face_run: Path, tmp_path: Path) -> None:
    metrics = EVALUATE.run(compose_config("evaluate", [f"ckpt_path={face_run}"], tmp_path / "e"))
    assert metrics["face"]["name"] == "crop" and metrics["face"]["crop_size"] == 64
    assert metrics["face/missing"] == 0
    # Scoring the test split through the stage gives the training run's own test scores.
    own = {
        r["path"]: float(r["prob_fake"]) for r in read_csv(face_run / "predictions" / "test.csv")
    }
    again = read_csv(tmp_path / "e" / "predictions" / "test.csv")
    assert {r["path"]: pytest.approx(float(r["prob_fake"]), abs=1e-5) for r in again} == own
    whole = EVALUATE.run(
        compose_config("evaluate", [f"ckpt_path={face_run}", "face=none"], tmp_path / "w")
    )
    assert whole["face"] is None
    rows = ROBUSTNESS.run(
        compose_config("robustness", [f"ckpt_path={face_run}", *ONE_JPEG], tmp_path / "r")
    )
    assert len(rows) >= 2


def test_predict_scores_every_face(face_run: Path, pictures: dict, tmp_path: Path) -> None:
    folder = pictures["photo"].parent
    summary = PREDICT.run(
        compose_config("predict", [f"ckpt_path={face_run}", f"input={folder}"], tmp_path)
    )
    assert summary["images"] == 3 and summary["faces"] == 5
    images = {Path(r["path"]).name: r for r in read_csv(tmp_path / "predictions.csv")}
    faces = read_csv(tmp_path / "faces.csv")
    group = [r for r in faces if r["path"].endswith("group.png")]
    assert len(group) == 4
    assert float(images["group.png"]["prob_fake"]) == pytest.approx(
        max(float(r["prob_fake"]) for r in group), abs=1e-6
    )
    assert images["empty.png"]["faces"] == "0"
    assert "no face found" in images["empty.png"]["note"]
    (photo_face,) = [r for r in faces if r["path"].endswith("photo.jpg")]
    assert 380 < float(photo_face["x"]) < 560 and 240 < float(photo_face["y"]) < 420
    largest = PREDICT.run(
        compose_config(
            "predict",
            [f"ckpt_path={face_run}", f"input={pictures['group']}", "face.select=largest"],
            tmp_path / "largest",
        )
    )
    assert largest["faces"] == 1


def test_predict_skips_a_faceless_picture_when_asked(
    face_run: Path, pictures: dict, tmp_path: Path
) -> None:
    args = [f"ckpt_path={face_run}", f"input={pictures['photo'].parent}", "face.on_missing=skip"]
    # A faceless picture is not a bad file: data.on_bad_image=error does not stop on it.
    summary = PREDICT.run(compose_config("predict", [*args, "data.on_bad_image=error"], tmp_path))
    assert summary["images"] == 2 and summary["skipped"] == 1
    assert "empty.png" in (tmp_path / "skipped_files.txt").read_text()


def test_a_whole_image_model_warns_about_small_faces(
    tiny_run: Path, pictures: dict, tmp_path: Path
) -> None:
    args = [f"ckpt_path={tiny_run}", f"input={pictures['photo'].parent}"]
    summary = PREDICT.run(compose_config("predict", args, tmp_path))
    notes = {Path(r["path"]).name: r["note"] for r in read_csv(tmp_path / "predictions.csv")}
    assert "trained on tight face crops" in notes["photo.jpg"]
    share = re.search(r"covers (\d+\.\d)% of the image", notes["photo.jpg"])
    assert share and 0.1 < float(share.group(1)) < 2  # a 30 px face in a 640x480 photo
    assert "no face found" in notes["empty.png"]
    assert summary["notes"] == 3
    quiet = PREDICT.run(compose_config("predict", [*args, "warn_small_face=null"], tmp_path / "q"))
    assert quiet["notes"] == 0


def test_export_carries_the_stage_and_serves_faces(
    face_run: Path, pictures: dict, tmp_path: Path
) -> None:
    EXPORT.run(compose_config("export", [f"ckpt_path={face_run}", "format=onnx"], tmp_path))
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["preprocessing"]["face"]["crop_size"] == 64
    assert any("find faces" in step for step in spec["preprocessing"]["steps"])
    for source in (face_run, tmp_path / "model.onnx"):
        served = load_detector(compose_config("serve", [f"ckpt_path={source}"], tmp_path / "s"))
        assert served.preprocessing.face.select == "all"
        with TestClient(create_app(served, ServiceSettings())) as client:
            files = [
                ("files", (p.name, p.read_bytes(), "image/png"))
                for p in (pictures["group"], pictures["empty"])
            ]
            answer = client.post("/predict", files=files).json()["results"]
            assert [len(r["faces"]) for r in answer] == [4, 0]
            assert answer[0]["prob_fake"] == pytest.approx(
                max(f["prob_fake"] for f in answer[0]["faces"])
            )
            assert answer[0]["width"] == 400 and len(answer[0]["faces"][0]["box"]) == 4
            assert "no face found" in answer[1]["note"]
            info = client.get("/info").json()
            assert info["preprocessing"]["face"]["margin"] == 1.3
            if served.detector is not None:
                heatmap = client.post("/explain", files=files[:1], data={"face": "2"})
                assert heatmap.status_code == 200 and heatmap.headers["x-face"] == "2"
                assert Image.open(io.BytesIO(heatmap.content)).size == (32, 32)
                wrong = client.post("/explain", files=files[:1], data={"face": "7"})
                assert wrong.status_code == 422 and "4 face(s)" in wrong.json()["detail"]


def test_serve_answers_a_faceless_picture_without_a_score(face_run: Path, pictures, tmp_path):
    served = load_detector(
        compose_config("serve", [f"ckpt_path={face_run}", "face.on_missing=skip"], tmp_path)
    )
    with TestClient(create_app(served, ServiceSettings())) as client:
        empty = pictures["empty"]
        answer = client.post("/predict", files=[("files", (empty.name, empty.read_bytes()))])
        (result,) = answer.json()["results"]
        assert answer.status_code == 200
        assert result["prob_fake"] is None and result["label"] == "No face"


def test_a_picture_over_the_pixel_limit_is_refused_before_faces_are_searched(
    face_run: Path, pictures: dict, tmp_path: Path
) -> None:
    args = [
        f"ckpt_path={face_run}",
        f"input={pictures['photo'].parent}",
        "data.max_image_pixels=100000",  # the 640x480 photo and the 400x400 group are over it
    ]
    summary = PREDICT.run(compose_config("predict", args, tmp_path))
    assert summary["images"] == 1 and summary["skipped"] == 2
    assert "max_image_pixels=100000" in (tmp_path / "skipped_files.txt").read_text()


def test_a_whole_image_model_notes_small_faces_in_the_answer(
    tiny_run: Path, pictures: dict, tmp_path: Path
) -> None:
    served = load_detector(compose_config("serve", [f"ckpt_path={tiny_run}"], tmp_path))
    assert served.preprocessing.face is None
    photo = pictures["photo"]
    with TestClient(create_app(served, ServiceSettings())) as client:
        files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))]
        (result,) = client.post("/predict", files=files).json()["results"]
        assert result["faces"] == [] and "trained on tight face crops" in result["note"]
    with TestClient(create_app(served, ServiceSettings(warn_small_face=None))) as client:
        (result,) = client.post("/predict", files=files).json()["results"]
        assert result["note"] == ""


def test_evaluate_a_whole_image_model_through_face_crops(tiny_run: Path, tmp_path: Path) -> None:
    """`face=crop` chooses a stage for a run trained without one; its noise images have no
    face, so each is scored whole and counted."""
    args = [f"ckpt_path={tiny_run}", "face=crop", f"face.cache_dir={tmp_path / 'cache'}"]
    metrics = EVALUATE.run(compose_config("evaluate", args, tmp_path / "e"))
    assert metrics["face"]["name"] == "crop"
    assert metrics["face/missing"] == metrics["data/images"] == 12


def test_without_the_crop_cache_crops_last_the_run(tmp_path: Path) -> None:
    """`face.cache=false`: crops go to a temporary folder that lives as long as the run."""
    root = make_face_dataset(tmp_path / "data", {"Train": 3, "Validation": 2, "Test": 2})
    run = train_face_run(root, tmp_path / "run", "face.cache=false")
    assert json.loads((run / "metrics.json").read_text())["hparams"]["face"] == "crop"
    assert not (tmp_path / "face-cache").exists()


def test_the_framing_note_searches_small_first_and_in_full_only_when_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deepfake_detection.detector import image_scoring

    head = astronaut().crop((130, 10, 320, 220))
    large = Image.new("RGB", (1024, 1024), (90, 110, 130))
    large.paste(head.resize((900, 900)), (60, 60))  # a face of about a fifth of the picture
    small = Image.new("RGB", (1024, 1024), (90, 110, 130))
    small.paste(head.resize((160, 160)), (450, 450))  # well under a tenth of the picture
    searched: list[int | None] = []
    finder = image_scoring._finder

    def counting(detect_size=None):
        searched.append(detect_size)
        return finder(detect_size)

    monkeypatch.setattr(image_scoring, "_finder", counting)
    assert image_scoring.framing_note(large, 0.1) == ""
    assert searched == [image_scoring.QUICK_DETECT_SIZE]  # settled by the quick search
    searched.clear()
    note = image_scoring.framing_note(small, 0.1)
    assert re.search(r"the face here covers \d\.\d%", note)
    assert searched == [image_scoring.QUICK_DETECT_SIZE, None]  # and again at full size
    searched.clear()
    thumbnail = Image.new("RGB", (90, 90), (90, 110, 130))
    thumbnail.paste(head.resize((20, 20)), (35, 35))  # no larger than the quick search
    assert image_scoring.framing_note(thumbnail, 0.1) != ""
    assert searched == [image_scoring.QUICK_DETECT_SIZE]  # which saw it whole: once
