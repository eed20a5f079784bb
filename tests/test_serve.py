"""`deepfake-serve`: the HTTP API scores like `predict`, explains, and refuses bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import compose_config, run_cli
from deepfake_detection.commands import PREDICT
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.exporting.export import export
from deepfake_detection.serving.app import ServiceSettings, _Gate, create_app
from deepfake_detection.serving.batching import BatchScorer
from deepfake_detection.serving.http_errors import ServiceError
from deepfake_detection.serving.server import settings_of

predict = PREDICT.run  # the command: its config checked, then run


def served_model(run_dir: Path, out: Path, *overrides: str):
    return load_detector(compose_config("serve", [f"ckpt_path={run_dir}", *overrides], out))


def client_for(served, **settings) -> TestClient:
    return TestClient(create_app(served, ServiceSettings(**settings)))


@pytest.fixture(scope="module")
def torch_served(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    return served_model(tiny_run, tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(torch_served):
    with client_for(torch_served) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def expected(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """`deepfake-predict`'s P(Fake) for every test image of the tiny run's dataset."""
    out = tmp_path_factory.mktemp("predict")
    images = tiny_run.parent / "data" / "test"
    predict(compose_config("predict", [f"ckpt_path={tiny_run}", f"input={images}"], out))
    with open(out / "predictions.csv", newline="") as handle:
        return {row["path"]: float(row["prob_fake"]) for row in csv.DictReader(handle)}


def upload(*paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def jpeg_bytes(size: int = 48, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def thin_png() -> bytes:
    """1 x 3000 pixels: under the pixel bound, but huge once resized for the model."""
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 1), (128, 64, 32)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_scores_match(client: TestClient, expected: dict[str, float], tolerance: float) -> None:
    paths = [Path(p) for p in sorted(expected)]
    response = client.post("/predict", files=upload(*paths))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["file"] for r in body["results"]] == [p.name for p in paths]
    for path, result in zip(paths, body["results"], strict=True):
        assert result["prob_fake"] == pytest.approx(expected[str(path)], abs=tolerance)
        assert result["label"] == ("Fake" if result["prob_fake"] > body["threshold"] else "Real")
        assert result["threshold"] == body["threshold"]


def test_predict_scores_as_deepfake_predict_does(client, expected, tiny_run: Path) -> None:
    assert_scores_match(client, expected, 1e-6)
    import json

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert client.get("/info").json()["threshold"] == pytest.approx(metrics["val/threshold"])


@pytest.mark.slow
@pytest.mark.parametrize("source", ["run", "model.onnx", "model.pt2"])
def test_onnx_and_exported_backends_score_the_same(
    source: str, tiny_run: Path, expected, tmp_path: Path
) -> None:
    if source == "run":
        served = served_model(tiny_run, tmp_path / "serve", "backend=onnx")
    else:
        fmt = "onnx" if source == "model.onnx" else "torch_export"
        overrides = [f"ckpt_path={tiny_run}", f"format={fmt}"]
        export(compose_config("export", overrides, tmp_path / "export"))
        served = served_model(tmp_path / "export" / source, tmp_path / "serve")
    assert (
        served.backend == {"run": "onnx", "model.onnx": "onnx", "model.pt2": "torch_export"}[source]
    )
    with client_for(served) as client:
        assert_scores_match(client, expected, 1e-4 if "onnx" in served.backend else 1e-6)
        assert client.post("/explain", files=upload(Path(sorted(expected)[0]))).status_code == 200


def test_explain_returns_a_heatmap_png_and_the_same_score(client, expected) -> None:
    path = Path(sorted(expected)[-1])
    response = client.post("/explain", files=upload(path))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert float(response.headers["x-prob-fake"]) == pytest.approx(expected[str(path)], abs=1e-6)
    assert response.headers["x-label"] in {"Fake", "Real"}
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.size == (32, 32) and overlay.mode == "RGB"
    original = Image.open(path).convert("RGB").resize((32, 32))
    assert np.abs(np.asarray(overlay, float) - np.asarray(original, float)).mean() > 5


def test_explain_works_on_a_frozen_model(tiny_mobilenet_run: Path, tmp_path: Path) -> None:
    served = served_model(tiny_mobilenet_run, tmp_path)
    image = next((tiny_mobilenet_run.parent / "data" / "test" / "Fake").iterdir())
    with client_for(served) as client:
        response = client.post("/explain", files=upload(image))
    assert response.status_code == 200, response.text


def test_health_info_and_docs(client) -> None:
    assert client.get("/health").json() == {"status": "ok", "auth": False}
    info = client.get("/info").json()
    assert info["model"] == "custom_cnn" and info["backend"] == "torch"
    assert info["image_size"] == 32 and info["positive_class"] == "Fake"
    assert info["package_version"] and info["limits"]["max_files"] == 16
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_api_key_guards_everything_but_health_and_the_page(torch_served) -> None:
    image = jpeg_bytes()
    with client_for(torch_served, api_key="s3cret") as client:
        for method, url in [
            ("get", "/info"),
            ("get", "/docs"),
            ("get", "/openapi.json"),
            ("post", "/predict"),
            ("post", "/explain"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                if method == "post":
                    files = [("files", ("a.jpg", image, "image/jpeg"))]
                    response = client.post(url, headers=headers, files=files)
                else:
                    response = client.get(url, headers=headers)
                assert response.status_code == 401, (url, headers)
                assert "API key" in response.json()["detail"]
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/health").json()["auth"] is True
        assert client.get("/").status_code == 200
        assert client.get("/info", headers=good).status_code == 200
        files = [("files", ("a.jpg", image, "image/jpeg"))]
        assert client.post("/predict", headers=good, files=files).status_code == 200


def test_cors_only_when_configured(torch_served) -> None:
    origin = {"Origin": "http://example.test"}
    with client_for(torch_served) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with client_for(torch_served, cors_origins=("http://example.test",)) as client:
        response = client.get("/health", headers=origin)
        assert response.headers["access-control-allow-origin"] == "http://example.test"


def test_bad_uploads_are_4xx_json_naming_the_problem(torch_served, expected) -> None:
    good = jpeg_bytes()
    full = jpeg_bytes(64)
    cases = [
        ([("files", ("notes.txt", b"hello, not an image", "text/plain"))], 422, "notes.txt"),
        ([("files", ("empty.jpg", b"", "image/jpeg"))], 422, "empty file"),
        ([("files", ("cut.jpg", full[: len(full) // 2], "image/jpeg"))], 422, "cut.jpg"),
        ([("files", ("big.jpg", jpeg_bytes(400), "image/jpeg"))], 422, "decompression bomb"),
        ([("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(4)], 400, "more than 3"),
        ([("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(7)], 400, "more than 3"),
        ([("files", ("thin.png", thin_png(), "image/png"))], 422, "too thin"),
        ([("other", ("a.jpg", good, "image/jpeg"))], 400, "field `files`"),
        ([("files", ("huge.jpg", b"\xff" * 300_000, "image/jpeg"))], 413, "too large"),
    ]
    served = torch_served
    settings = {"max_files": 3, "max_upload_bytes": 200_000, "max_video_bytes": 250_000}
    original = served.preprocessing
    from dataclasses import replace

    served.preprocessing = replace(original, max_pixels=100_000)
    try:
        with client_for(served, **settings) as client:
            for files, status, words in cases:
                response = client.post("/predict", files=files)
                assert response.status_code == status, (words, response.text)
                assert words in response.json()["detail"], response.json()
            response = client.post("/predict", json={"files": []})
            assert (
                response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
            )
            response = client.post("/predict", data={"x": "1"})
            assert response.status_code == 415
            two = [("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(2)]
            response = client.post("/explain", files=two)
            assert response.status_code == 400 and "/explain takes 1" in response.json()["detail"]

            response = client.post(  # a multipart form with no parts at all
                "/predict",
                content=b"--xyz--\r\n",
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            )
            assert response.status_code == 400 and "no images" in response.json()["detail"]

            def streamed():  # no Content-Length: the limit is enforced while reading
                yield b"--xyz\r\nContent-Disposition: form-data; name=files; filename=a.jpg\r\n\r\n"
                for _ in range(30):
                    yield b"\0" * 10_000

            response = client.post(
                "/predict",
                content=streamed(),
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            )
            assert response.status_code == 413 and "too large" in response.json()["detail"]
            response = client.post(
                "/predict",
                content=b"--xyz\r\nContent-Disposition: form-data; name=files\r\n\r\n",
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            )
            assert 400 <= response.status_code < 500
    finally:
        served.preprocessing = original


def test_fuzzed_uploads_never_take_the_service_down(client, expected) -> None:
    rng = np.random.default_rng(7)
    png = Path(sorted(expected)[0]).read_bytes()
    jpeg = jpeg_bytes(64)
    statuses = []
    for i in range(210):
        kind = i % 6
        if kind == 0:
            data = rng.bytes(int(rng.integers(0, 3000)))
        elif kind == 1:
            data = png[: int(rng.integers(1, len(png)))]
        elif kind == 2:
            data = jpeg[: int(rng.integers(1, len(jpeg)))]
        elif kind == 3:  # a valid header, then garbage
            data = jpeg[:200] + rng.bytes(500)
        elif kind == 4:  # bit flips in the middle of a real JPEG
            data = bytearray(jpeg)
            for at in rng.integers(20, len(data), 30):
                data[at] ^= 0xFF
            data = bytes(data)
        else:  # a huge, odd header value and file name
            data = rng.bytes(64)
        name = "x" * int(rng.integers(1, 3000)) + ".jpg" if kind == 5 else f"fuzz{i}.jpg"
        headers = {"X-Junk": "y" * 6000} if kind == 5 else None
        response = client.post(
            "/predict", files=[("files", (name, data, "image/jpeg"))], headers=headers
        )
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/json")
    assert sum(400 <= s < 500 for s in statuses) >= 200
    assert_scores_match(client, expected, 1e-6)  # and still scoring correctly


def test_a_slow_request_times_out_with_504(torch_served) -> None:
    from dataclasses import replace

    def slow(batch: torch.Tensor) -> torch.Tensor:
        time.sleep(1.0)
        return torch.zeros(len(batch))

    with client_for(replace(torch_served, score=slow), request_timeout_s=0.2) as client:
        response = client.post("/predict", files=[("files", ("a.jpg", jpeg_bytes(), "image/jpeg"))])
    assert response.status_code == 504 and "request_timeout_s" in response.json()["detail"]


def test_max_concurrent_turns_the_next_request_away_with_503(torch_served) -> None:
    from dataclasses import replace

    started = threading.Event()

    def slow(batch: torch.Tensor) -> torch.Tensor:
        started.set()
        time.sleep(1.0)
        return torch.zeros(len(batch))

    files = [("files", ("a.jpg", jpeg_bytes(), "image/jpeg"))]
    statuses: list[int] = []
    with client_for(replace(torch_served, score=slow), max_concurrent=1) as client:
        first = threading.Thread(
            target=lambda: statuses.append(client.post("/predict", files=files).status_code)
        )
        first.start()
        assert started.wait(10)
        second = client.post("/predict", files=files)
        first.join()
    assert statuses == [200]
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "max_concurrent=1" in second.json()["detail"]


def test_gate_refuses_beyond_max_concurrent() -> None:
    async def scenario() -> None:
        gate = _Gate(limit=1)
        async with gate.slot():
            with pytest.raises(ServiceError) as busy:
                async with gate.slot():
                    pass
            assert busy.value.status_code == 503 and busy.value.headers == {"Retry-After": "1"}
        async with gate.slot():  # free again
            assert gate.busy == 1

    asyncio.run(scenario())


def test_requests_waiting_together_are_scored_in_one_batch() -> None:
    sizes: list[int] = []
    release = threading.Event()

    def runner(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(len(batch))
        release.wait(5)
        return batch[:, 0, 0, 0]

    async def scenario() -> list[torch.Tensor]:
        scorer = BatchScorer(runner, max_batch=8)
        await scorer.start()
        first = asyncio.create_task(scorer.score(torch.full((1, 3, 2, 2), 1.0)))
        await asyncio.sleep(0.05)  # the first batch is on the model thread now
        rest = [
            asyncio.create_task(scorer.score(torch.full((n, 3, 2, 2), float(n)))) for n in (2, 3)
        ]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
        await scorer.stop()
        return results

    results = asyncio.run(scenario())
    assert sizes == [1, 5]
    assert [r.tolist() for r in results] == [[1.0], [2.0, 2.0], [3.0, 3.0, 3.0]]


def test_settings_come_from_the_config(tmp_path: Path, tiny_run: Path) -> None:
    cfg = compose_config(
        "serve",
        [
            f"ckpt_path={tiny_run}",
            "api_key=k",
            "limits.max_upload_mb=1.5",
            "cors_origins=[http://a]",
        ],
        tmp_path,
    )
    settings = settings_of(cfg)
    assert settings.api_key == "k" and settings.max_upload_bytes == 1_500_000
    assert settings.cors_origins == ("http://a",)
    default = compose_config("serve", [f"ckpt_path={tiny_run}"], tmp_path)
    assert default.host == "127.0.0.1" and default.cors_origins == []
    assert settings_of(default).api_key is None  # unless DEEPFAKE_API_KEY is set


@pytest.mark.slow
def test_a_bad_checkpoint_stops_start_up_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    run = run_cli([f"ckpt_path={bad}"], tmp_path, module="deepfake_detection.serve")
    assert run.returncode == 2 and "bad.ckpt" in run.stderr and "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1


def test_the_service_shares_the_cores_as_configured(tmp_path: Path) -> None:
    from deepfake_detection.detector import formats
    from deepfake_detection.serving.server import share_the_cores, usable_cores

    cfg = compose_config("serve", ["ckpt_path=x", "cpu.model_threads=1"], tmp_path)
    threads = torch.get_num_threads()
    try:
        share_the_cores(cfg)
        assert formats._onnx_threads == formats.OnnxThreads(1, spinning=False)
        assert torch.get_num_threads() == 1
    finally:
        formats.configure_onnx_threads(formats.OnnxThreads())
        torch.set_num_threads(threads)
    assert settings_of(cfg).decode_threads == usable_cores()
    given = compose_config("serve", ["ckpt_path=x", "cpu.decode_threads=3"], tmp_path)
    assert settings_of(given).decode_threads == 3
