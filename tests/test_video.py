"""Video clips: reading (containers, codecs, rotation, variable frame rate, broken files),
scoring a clip from its frames, and `deepfake-predict` on clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import compose_config, face_frames, write_clip
from deepfake_detection.commands import PREDICT
from deepfake_detection.errors import DatasetError
from deepfake_detection.metrics.per_clip import aggregate
from deepfake_detection.video import reading
from deepfake_detection.video.reading import BadVideoError, read_clip
from deepfake_detection.video.settings import VideoSettings


def numbered_frames(count: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    """Frames whose red level tells their number (i * 5), with a white band on top."""
    width, height = size
    frames = []
    for i in range(count):
        array = np.zeros((height, width, 3), np.uint8)
        array[..., 0] = i * 5
        array[: height // 6] = 255
        frames.append(array)
    return frames


def frame_number(image: Image.Image) -> int:
    array = np.asarray(image)
    return round(float(array[array.shape[0] // 2 :, :, 0].mean()) / 5)


CONTAINERS = [
    ("libx264", "mp4"),
    ("libx264", "mov"),
    ("libx264", "mkv"),
    ("mpeg4", "avi"),
    ("libvpx-vp9", "webm"),
]


@pytest.mark.parametrize(("codec", "suffix"), CONTAINERS)
def test_frames_are_sampled_evenly_in_every_container(
    tmp_path: Path, codec: str, suffix: str
) -> None:
    path = write_clip(tmp_path / f"clip.{suffix}", numbered_frames(50), fps=10, codec=codec)
    clip = read_clip(path, VideoSettings(frames=5))
    # 5 s: the frame on screen at the middle of each second.
    assert [f.time for f in clip.frames] == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5])
    assert [frame_number(f.image) for f in clip.frames] == [5, 15, 25, 35, 45]
    assert clip.frames[0].image.size == (96, 64) and clip.frames[0].image.mode == "RGB"
    assert clip.duration == pytest.approx(5.0) and clip.fps == pytest.approx(10.0)


def test_a_long_clip_is_read_by_seeking_and_gives_the_same_frames(tmp_path, monkeypatch):
    path = write_clip(tmp_path / "clip.mp4", numbered_frames(50), fps=10)
    in_order = read_clip(path, VideoSettings(frames=7))
    monkeypatch.setattr(reading, "SEQUENTIAL_FRAMES", 0)
    seeking = read_clip(path, VideoSettings(frames=7))
    assert [f.time for f in seeking.frames] == [f.time for f in in_order.frames]
    assert [frame_number(f.image) for f in seeking.frames] == [
        frame_number(f.image) for f in in_order.frames
    ]


def test_fps_sampling_and_the_frame_cap(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", numbered_frames(50), fps=10)
    assert len(read_clip(path, VideoSettings(fps=2)).frames) == 10
    assert len(read_clip(path, VideoSettings(fps=2, max_frames=4)).frames) == 4


def test_a_short_clip_gives_each_frame_once(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", numbered_frames(6), fps=10, audio=True)
    clip = read_clip(path, VideoSettings(frames=32))
    assert [frame_number(f.image) for f in clip.frames] == [0, 1, 2, 3, 4, 5]


def test_a_phone_clip_is_turned_upright(tmp_path: Path) -> None:
    # Stored on its side, with a display matrix saying "turn 90 degrees counter-clockwise".
    path = write_clip(tmp_path / "phone.mp4", numbered_frames(10), rotation=90)
    clip = read_clip(path, VideoSettings(frames=2))
    image = np.asarray(clip.frames[0].image)
    assert clip.rotation == 90 and image.shape[:2] == (96, 64)
    assert image[:, :5].mean() > 200 and image[:, -5:].mean() < 100  # the top band: left


def test_a_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.2, 0.3, 2.0, 2.1, 4.0, 4.05, 4.1, 6.0]
    path = write_clip(tmp_path / "vfr.mp4", numbered_frames(10), times=times)
    clip = read_clip(path, VideoSettings(frames=6))
    assert clip.duration > 6.0
    # The frame on screen at each of 6 evenly spread times (0.51, 1.53, ... 5.59 s): number 3
    # until 2 s, 5 until 4 s, then 8 until 6 s; each once.
    assert [frame_number(f.image) for f in clip.frames] == [3, 5, 8]
    assert [f.time for f in clip.frames] == pytest.approx([0.3, 2.1, 4.1])


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    good = write_clip(tmp_path / "good.mp4", numbered_frames(30), fps=10)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "audio.mp4"
    import av

    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        silence = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        silence.sample_rate = 8000
        container.mux(stream.encode(silence))
        container.mux(stream.encode())
    return {
        "truncated": truncated,
        "text": text,
        "empty": empty,
        "audio_only": audio_only,
    }


def test_a_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    broken = _broken_files(tmp_path)
    reasons = {}
    for kind, path in broken.items():
        if kind == "truncated":
            continue  # its first frames may decode: checked below
        with pytest.raises(BadVideoError) as raised:
            read_clip(path, VideoSettings())
        assert str(raised.value).startswith(f"{path}: cannot read video: "), kind
        reasons[kind] = raised.value.reason
    assert "no video stream" in reasons["audio_only"]
    try:
        clip = read_clip(broken["truncated"], VideoSettings(frames=8))
    except BadVideoError as err:
        assert err.reason
    else:
        assert 0 < len(clip.frames) <= 8  # what could be decoded, no more


def test_one_damaged_byte_loses_at_most_a_frame(tmp_path: Path) -> None:
    data = write_clip(tmp_path / "clip.mp4", numbered_frames(40), fps=10).read_bytes()
    rng = np.random.default_rng(0)
    for i in range(12):
        damaged = bytearray(data)
        damaged[int(rng.integers(len(data) // 4, 3 * len(data) // 4))] ^= 0xFF
        path = tmp_path / f"damaged{i}.mp4"
        path.write_bytes(bytes(damaged))
        clip = read_clip(path, VideoSettings(frames=8))
        assert len(clip.frames) == 8, (i, clip.damaged)


def test_limits_refuse_a_clip_with_the_key_named(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", numbered_frames(30), fps=10)
    with pytest.raises(BadVideoError, match=r"96x64 px exceed video.max_frame_pixels=1000"):
        read_clip(path, VideoSettings(max_frame_pixels=1000))
    with pytest.raises(BadVideoError, match=r"3 s long, over video.max_seconds=2"):
        read_clip(path, VideoSettings(max_seconds=2))
    with pytest.raises(BadVideoError, match=r"30 frames, over video.max_clip_frames=20"):
        read_clip(path, VideoSettings(max_clip_frames=20))
    with pytest.raises(
        BadVideoError, match=r"5 frames of 96x64 px would take 0 MB in memory, over"
    ):
        read_clip(path, VideoSettings(frames=5, max_decoded_mb=0.05))


def test_a_two_hour_file_is_sampled_over_its_whole_length(tmp_path: Path) -> None:
    # A frame a minute for two hours: 7,200 s, sampled at 32 evenly spread times.
    times = [60.0 * i for i in range(121)]
    path = write_clip(tmp_path / "long.mkv", (numbered_frames(41) * 3)[:121], times=times)
    clip = read_clip(path, VideoSettings())
    assert clip.duration == pytest.approx(7200, abs=61) and len(clip.frames) == 32
    with pytest.raises(BadVideoError, match="over video.max_seconds=3600"):
        read_clip(path, VideoSettings(max_seconds=3600))


def test_aggregates() -> None:
    probs = [0.1, 0.2, 0.9, 0.3]
    assert aggregate(probs, "mean") == pytest.approx(0.375)
    assert aggregate(probs, "median") == pytest.approx(0.25)
    assert aggregate(probs, "max") == 0.9
    assert aggregate(probs, "topk_mean", topk=2) == pytest.approx(0.6)
    assert aggregate(probs, "topk_mean", topk=10) == pytest.approx(0.375)


# --- deepfake-predict on clips ------------------------------------------------------------


def run_predict(overrides: list[str], output_dir: Path) -> dict:
    PREDICT.run(compose_config("predict", overrides, output_dir))
    return json.loads((output_dir / "predict.json").read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_gives_each_clip_a_verdict_frames_and_a_timeline(tiny_run, tmp_path) -> None:
    inputs = tmp_path / "inputs"
    write_clip(inputs / "a.mp4", numbered_frames(40), fps=10)
    write_clip(inputs / "nested" / "b.webm", numbered_frames(20), fps=10, codec="libvpx-vp9")
    (inputs / "broken.mp4").write_text("not a video")
    Image.fromarray(numbered_frames(1)[0]).save(inputs / "still.png")
    out = tmp_path / "out"
    summary = run_predict(
        [f"ckpt_path={tiny_run}", f"input={inputs}", "video.frames=8", "threshold=0.5"], out
    )
    assert summary["images"] == 1 and summary["videos"] == 2 and summary["skipped"] == 1
    assert summary["fake"] + summary["real"] == 3
    assert summary["video"]["frames"] == 8

    videos = {Path(r["path"]).name: r for r in read_csv(out / "videos.csv")}
    frames = read_csv(out / "frames.csv")
    assert set(videos) == {"a.mp4", "b.webm"}
    for name, row in videos.items():
        own = [float(f["prob_fake"]) for f in frames if Path(f["path"]).name == name]
        assert len(own) == int(row["frames_used"]) == 8
        assert float(row["prob_fake"]) == pytest.approx(np.mean(own), abs=1e-6)
        assert row["prediction"] == ("Fake" if float(row["prob_fake"]) > 0.5 else "Real")
        assert row["frames_without_face"] == "0"
    assert float(videos["b.webm"]["duration_s"]) == pytest.approx(2.0)
    # One table of every input, images and clips alike.
    listed = {Path(r["path"]).name for r in read_csv(out / "predictions.csv")}
    assert listed == {"a.mp4", "b.webm", "still.png"}
    assert sorted(p.name for p in (out / "timelines").iterdir()) == ["a.png", "b.png"]
    assert "broken.mp4" in (out / "skipped_files.txt").read_text()


def test_a_frame_is_scored_as_the_image_it_shows(tiny_run, tmp_path: Path) -> None:
    still = numbered_frames(1)[0]
    clip = write_clip(tmp_path / "still.avi", [still] * 10, fps=5, codec="ffv1")  # lossless
    Image.fromarray(still).save(tmp_path / "still.png")
    out = tmp_path / "out"
    run_predict([f"ckpt_path={tiny_run}", f"input={clip}", "video.frames=3"], out / "clip")
    run_predict([f"ckpt_path={tiny_run}", f"input={tmp_path / 'still.png'}"], out / "image")
    image_prob = float(read_csv(out / "image" / "predictions.csv")[0]["prob_fake"])
    for frame in read_csv(out / "clip" / "frames.csv"):
        assert float(frame["prob_fake"]) == pytest.approx(image_prob, abs=1e-5)


def test_predict_counts_frames_without_a_face(tiny_run, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "face.mp4", face_frames(10, without_face=(0, 1, 2)), fps=5)
    face = ["face=crop", "face.crop_size=64", f"face.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "whole"
    run_predict([f"ckpt_path={tiny_run}", f"input={clip}", "video.frames=10", *face], out)
    row = read_csv(out / "videos.csv")[0]
    assert row["frames_without_face"] == "3" and row["frames_used"] == "10"
    assert "3 of 10 frame(s) without a face (scored whole)" in row["note"]
    boxes = [f for f in read_csv(out / "frames.csv") if f["x"]]
    assert len(boxes) == 7  # one face per frame where there is one: the largest

    out = tmp_path / "skip"
    run_predict(
        [
            f"ckpt_path={tiny_run}",
            f"input={clip}",
            "video.frames=10",
            *face,
            "face.on_missing=skip",
        ],
        out,
    )
    row = read_csv(out / "videos.csv")[0]
    assert row["frames_used"] == "7" and "(left out)" in row["note"]
    left_out = [f for f in read_csv(out / "frames.csv") if f["prediction"] == "not scored"]
    assert len(left_out) == 3


def test_a_folder_without_images_or_clips_names_what_was_looked_for(tiny_run, tmp_path) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match=r"no images or videos found \(looked for .*\.mp4"):
        run_predict([f"ckpt_path={tiny_run}", f"input={tmp_path / 'inputs'}"], tmp_path / "o")


def test_on_bad_image_error_stops_at_a_broken_clip(tiny_run, tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_text("not a video")
    with pytest.raises(DatasetError, match=r"broken.mp4: not a video FFmpeg can open"):
        run_predict(
            [
                f"ckpt_path={tiny_run}",
                f"input={tmp_path / 'broken.mp4'}",
                "data.on_bad_image=error",
            ],
            tmp_path / "o",
        )


# --- deepfake-serve: clips uploaded to /predict ---------------------------------------------


@pytest.fixture(scope="module")
def video_service(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    from deepfake_detection.detector.exported_model import load_detector

    out = tmp_path_factory.mktemp("serve")
    return load_detector(compose_config("serve", [f"ckpt_path={tiny_run}"], out))


def video_client(served, **settings):
    from fastapi.testclient import TestClient

    from deepfake_detection.serving.app import ServiceSettings, create_app

    settings.setdefault("video", VideoSettings(frames=6))
    return TestClient(create_app(served, ServiceSettings(**settings)))


def test_serve_answers_a_clip_like_predict(video_service, tiny_run, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", numbered_frames(30), fps=10)
    image = tmp_path / "still.png"
    Image.fromarray(numbered_frames(1)[0]).save(image)
    run_predict(
        [f"ckpt_path={tiny_run}", f"input={clip}", "video.frames=6", "threshold=val"],
        tmp_path / "predict",
    )
    expected = read_csv(tmp_path / "predict" / "videos.csv")[0]
    with video_client(video_service) as client:
        # Named anything: a clip is told by its first bytes.
        files = [
            ("files", ("upload.bin", clip.read_bytes(), "application/octet-stream")),
            ("files", ("still.png", image.read_bytes(), "image/png")),
        ]
        response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    video, still = response.json()["results"]
    assert video["kind"] == "video" and "kind" not in still
    assert video["prob_fake"] == pytest.approx(float(expected["prob_fake"]), abs=1e-5)
    assert video["label"] == expected["prediction"] and video["frames_used"] == 6
    assert [f["time"] for f in video["frames"]] == pytest.approx([0.2, 0.7, 1.2, 1.7, 2.2, 2.7])
    assert video["duration_s"] == pytest.approx(3.0)


def test_serve_refuses_clips_beyond_its_limits(video_service, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", numbered_frames(30), fps=10).read_bytes()
    cases = [
        ({"video": VideoSettings(max_seconds=2)}, 422, "over video.max_seconds=2"),
        ({"video": VideoSettings(max_clip_frames=10)}, 422, "over video.max_clip_frames=10"),
        ({"video": VideoSettings(max_frame_pixels=100)}, 422, "exceed video.max_frame_pixels"),
        ({"max_video_bytes": 1000}, 413, "over limits.max_video_mb"),
    ]
    for settings, status, words in cases:
        with video_client(video_service, **settings) as client:
            response = client.post("/predict", files=[("files", ("c.mp4", clip, "video/mp4"))])
        assert response.status_code == status, (settings, response.text)
        assert words in response.json()["detail"], response.json()
        assert response.headers["content-type"].startswith("application/json")
    with video_client(video_service, max_upload_bytes=1000) as client:
        two = [("files", (f"c{i}.mp4", clip, "video/mp4")) for i in range(2)]
        response = client.post("/predict", files=two)
        assert response.status_code == 400 and "2 videos in one request" in response.text
        # /explain takes images only, held to the images' limit.
        response = client.post("/explain", files=[("files", ("a.png", b"x" * 2000, "image/png"))])
        assert response.status_code == 413 and "limits.max_upload_mb" in response.text
        response = client.post("/predict", files=[("files", ("c.mp4", b"junk", "video/mp4"))])
        assert response.status_code == 422
        assert response.json()["detail"].startswith("c.mp4: not a usable video: ")
        info = client.get("/info").json()["limits"]
        assert info["max_video_mb"] == 200 and info["video"]["frames"] == 6
        assert info["max_upload_mb"] == 0.001


def test_fuzzed_clips_never_take_the_service_down(video_service, tmp_path: Path) -> None:
    good = {
        suffix: write_clip(tmp_path / f"c.{suffix}", numbered_frames(20), codec=codec).read_bytes()
        for codec, suffix in CONTAINERS
    }
    rng = np.random.default_rng(11)
    statuses = []
    with video_client(video_service) as client:
        for i in range(60):
            suffix = list(good)[i % len(good)]
            data = good[suffix]
            kind = i % 4
            if kind == 0:  # cut short
                data = data[: int(rng.integers(1, len(data)))]
            elif kind == 1:  # bit flips past the header
                flipped = bytearray(data)
                for at in rng.integers(64, len(flipped), 40):
                    flipped[at] ^= 0xFF
                data = bytes(flipped)
            elif kind == 2:  # a valid start, then noise
                data = data[:300] + rng.bytes(3000)
            response = client.post(
                "/predict", files=[("files", (f"fuzz{i}.{suffix}", data, "video/mp4"))]
            )
            statuses.append(response.status_code)
            assert response.status_code < 500, response.text
            assert response.headers["content-type"].startswith("application/json")
        # Still answering clips and images correctly afterwards.
        response = client.post("/predict", files=[("files", ("ok.mp4", good["mp4"], "video/mp4"))])
        assert response.status_code == 200 and response.json()["results"][0]["frames_used"] == 6
    assert statuses.count(200) >= 15  # the untouched clips, and what could still be decoded


# --- datasets of clips: train and evaluate ------------------------------------------------


def labelled_frames(label: int, seed: int, count: int = 12) -> list[np.ndarray]:
    """Frames of a clip whose class shows: Fake clips carry a coarse checkerboard."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        array = np.full((48, 64, 3), rng.integers(60, 200, 3), np.uint8)
        array[:, i * 4 : i * 4 + 8] = 255  # something moves
        if label:
            array[(np.indices((48, 64)).sum(0) // 8) % 2 == 1] //= 3
        frames.append(array)
    return frames


def make_clip_dataset(root: Path, per_class: dict[str, int]) -> Path:
    for number, (split, count) in enumerate(per_class.items()):
        for name, label in (("Fake", 1), ("Real", 0)):
            for i in range(count):
                seed = 1000 * number + 100 * label + i
                write_clip(root / split / name / f"{i:02d}.mp4", labelled_frames(label, seed))
    return root


def test_a_dataset_of_clips_trains_and_reports_frame_and_video_levels(tmp_path: Path) -> None:
    from deepfake_detection.commands import EVALUATE, TRAIN

    data = make_clip_dataset(tmp_path / "data", {"train": 4, "valid": 2, "test": 3})
    Image.fromarray(labelled_frames(1, 99)[0]).save(data / "train" / "Fake" / "still.png")
    (data / "train" / "Real" / "broken.mp4").write_text("not a video")
    run_dir = tmp_path / "run"
    args = [
        f"data.root={data}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.widths=[4,8]",
        "trainer.max_epochs=1",
        "early_stopping=none",
        "video.frames=4",
        f"video.cache_dir={tmp_path / 'frames'}",
    ]
    TRAIN.run(compose_config("train", args, run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 3 clips per class in test, 4 frames each: frame level over 24 frames, video over 6.
    assert metrics["test_video/clips"] == 6 and metrics["test_video/frames"] == 24
    assert metrics["test_video/aggregate"] == "mean"
    for key in ("auroc", "ap", "eer", "acc"):
        assert 0 <= metrics[f"test_video/{key}"] <= 1 and 0 <= metrics[f"test/{key}"] <= 1
    clips = read_csv(run_dir / "predictions" / "test_videos.csv")
    frames = read_csv(run_dir / "predictions" / "test.csv")
    assert {Path(r["path"]).name for r in clips} == {"00.mp4", "01.mp4", "02.mp4"}
    assert len(frames) == 24
    first = clips[0]["path"]
    # A clip's score is the mean of its frames'.
    from deepfake_detection.video.frame_store import FrameStore

    store = FrameStore(VideoSettings(frames=4, cache_dir=str(tmp_path / "frames")))
    own = {str(store.folder_of(Path(first)) / f"{i:04d}.png") for i in range(4)}
    mean = np.mean([float(r["prob_fake"]) for r in frames if r["path"] in own])
    assert float(clips[0]["prob_fake"]) == pytest.approx(mean, abs=1e-6)
    assert "broken.mp4" in (run_dir / "skipped_files.txt").read_text()

    # Evaluate reads the same clips from the store, and reports both levels again.
    out = tmp_path / "evaluate"
    EVALUATE.run(compose_config("evaluate", [f"ckpt_path={run_dir}", "threshold=0.5"], out))
    again = json.loads((out / "metrics.json").read_text())
    assert again["test_video/auroc"] == pytest.approx(metrics["test_video/auroc"], abs=1e-6)
    assert again["test/auroc"] == pytest.approx(metrics["test/auroc"], abs=1e-6)
    # ... and may score each clip by another aggregate of the same frames.
    out = tmp_path / "evaluate-max"
    overrides = [f"ckpt_path={run_dir}", "threshold=0.5", "video.aggregate=max"]
    EVALUATE.run(compose_config("evaluate", overrides, out))
    assert json.loads((out / "metrics.json").read_text())["test_video/aggregate"] == "max"
    frame_probs = read_csv(out / "predictions" / "test.csv")
    top = max(float(r["prob_fake"]) for r in frame_probs if r["path"] in own)
    clip_rows = {r["path"]: r for r in read_csv(out / "predictions" / "test_videos.csv")}
    assert float(clip_rows[first]["prob_fake"]) == pytest.approx(top, abs=1e-6)


def test_clip_frames_are_extracted_once_and_kept(tmp_path: Path) -> None:
    from deepfake_detection.video.frame_store import FrameStore

    clip = write_clip(tmp_path / "a.mp4", numbered_frames(30), fps=10)
    store = FrameStore(VideoSettings(frames=3, cache_dir=str(tmp_path / "store")))
    first = store.prepare([clip, tmp_path / "missing.mp4"])
    assert first.extracted == 1 and first.reused == 0 and len(first.bad) == 1
    frames = first.frames[str(clip)]
    assert [t for _, t in frames] == pytest.approx([0.5, 1.5, 2.5])
    assert [frame_number(Image.open(f)) for f, _ in frames] == [5, 15, 25]
    again = store.prepare([clip])
    assert again.reused == 1 and again.frames == {str(clip): frames}
    # Other sampling settings, or a changed clip, extract again.
    other = FrameStore(VideoSettings(frames=4, cache_dir=str(tmp_path / "store")))
    assert other.prepare([clip]).extracted == 1
    write_clip(clip, numbered_frames(20), fps=10)
    assert store.prepare([clip]).extracted == 1


def test_a_clip_with_a_video_stream_but_no_frames(tmp_path: Path) -> None:
    import av

    path = tmp_path / "empty-stream.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.mux(stream.encode())
    with pytest.raises(BadVideoError, match="no frame could be decoded|cannot"):
        read_clip(path, VideoSettings())


def test_a_clip_being_scored_does_not_hold_up_image_requests(video_service, tmp_path) -> None:
    import threading
    import time
    from dataclasses import replace

    import torch

    def slow(batch: torch.Tensor) -> torch.Tensor:
        time.sleep(0.25)
        return torch.zeros(len(batch))

    clip = write_clip(tmp_path / "c.mp4", numbered_frames(30), fps=10).read_bytes()
    image = tmp_path / "a.png"
    Image.fromarray(numbered_frames(1)[0]).save(image)
    done: dict[str, tuple[float, int]] = {}
    served = replace(video_service, score=slow)
    with video_client(served, video=VideoSettings(frames=12), max_batch=2) as client:

        def send_clip() -> None:
            response = client.post("/predict", files=[("files", ("c.mp4", clip, "video/mp4"))])
            done["clip"] = (time.monotonic(), response.status_code)

        sender = threading.Thread(target=send_clip)
        sender.start()
        time.sleep(0.6)  # the clip's 6 batches of 2 frames take 1.5 s
        files = [("files", ("a.png", image.read_bytes(), "image/png"))]
        response = client.post("/predict", files=files)
        done["image"] = (time.monotonic(), response.status_code)
        sender.join()
    assert done["clip"][1] == done["image"][1] == 200
    assert done["image"][0] < done["clip"][0]  # answered between the clip's batches


@pytest.mark.slow
def test_predict_scores_a_clip_alike_on_onnx(tiny_run, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mkv", numbered_frames(20), fps=10)
    for backend in ("torch", "onnx"):
        run_predict(
            [f"ckpt_path={tiny_run}", f"input={clip}", "video.frames=5", f"backend={backend}"],
            tmp_path / backend,
        )
    torch_frames = read_csv(tmp_path / "torch" / "frames.csv")
    onnx_frames = read_csv(tmp_path / "onnx" / "frames.csv")
    assert len(torch_frames) == len(onnx_frames) == 5
    for ours, theirs in zip(torch_frames, onnx_frames, strict=True):
        assert float(ours["prob_fake"]) == pytest.approx(float(theirs["prob_fake"]), abs=1e-4)
