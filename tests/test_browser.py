"""The web page in a real browser: upload, verdict and score as the API gives them, heatmap.

Runs `deepfake-serve` on a loopback port and drives Debian's Chromium with Playwright
(launched through `executable_path`; Playwright's own browser download is not needed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import face_frames, face_picture, make_face_dataset, train_face_run, write_clip

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    given = os.environ.get("CHROMIUM")
    if given and Path(given).is_file():
        return given
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM=<path>)")
    return found


@contextmanager
def serving(run_dir: Path, tmp_path: Path) -> Iterator[str]:
    """`deepfake-serve` of `run_dir` on a free loopback port; yields its URL."""
    port = free_port()
    log_file = open(tmp_path / "serve-output.txt", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepfake_detection.serve",
            f"ckpt_path={run_dir}",
            f"port={port}",
            f"hydra.run.dir={tmp_path / 'serve'}",
        ],
        cwd=tmp_path,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"deepfake-serve exited: {(tmp_path / 'serve-output.txt').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("deepfake-serve did not answer /health within 120 s")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()


@pytest.fixture
def server(tiny_run: Path, tmp_path: Path, chromium: str) -> Iterator[str]:
    with serving(tiny_run, tmp_path) as url:
        yield url


def test_page_shows_the_apis_verdict_and_a_heatmap(
    server: str, chromium: str, tiny_run: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    image = tiny_run.parent / "data" / "test" / "Fake" / "000.png"
    api = httpx.post(
        f"{server}/predict", files=[("files", (image.name, image.read_bytes(), "image/png"))]
    ).json()["results"][0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 720})
        page.goto(server)
        page.wait_for_selector("#model-info:has-text('custom_cnn')")
        page.set_input_files("#file-input", str(image))
        card = page.locator(".result").first
        page.wait_for_selector(".result[data-state='Fake'], .result[data-state='Real']")
        assert card.locator(".verdict").inner_text() == api["label"]
        assert float(card.get_attribute("data-prob")) == api["prob_fake"]
        assert f"{api['prob_fake']:.4f}" in card.locator(".prob").inner_text()
        width = card.locator(".bar-fill").evaluate("e => e.style.width")
        assert width == f"{100 * api['prob_fake']:.1f}%"

        card.locator(".cam-toggle").check()
        page.wait_for_selector(".result[data-cam='on']")
        thumb = card.locator(".thumb")
        page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=thumb.element_handle())
        assert thumb.get_attribute("src") == card.get_attribute("data-heatmap")

        # Drag-and-drop: a real image dropped on the zone gets its own card and verdict.
        dropped = tiny_run.parent / "data" / "test" / "Real" / "000.png"
        page.evaluate(
            """([name, bytes]) => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
                const zone = document.getElementById("drop-zone");
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
            }""",
            [dropped.name, list(dropped.read_bytes())],
        )
        page.wait_for_function("document.querySelectorAll('.result[data-prob]').length === 2")
        expected = httpx.post(
            f"{server}/predict",
            files=[("files", (dropped.name, dropped.read_bytes(), "image/png"))],
        ).json()["results"][0]
        newest = page.locator(".result").first
        assert float(newest.get_attribute("data-prob")) == expected["prob_fake"]

        # A rejected file shows the service's reason on its card.
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        page.set_input_files("#file-input", str(bad))
        page.wait_for_selector(".result[data-state='error']")
        message = page.locator(".result[data-state='error'] .message").inner_text()
        assert "notes.png" in message and "not a usable image" in message

        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 5000


def test_page_draws_each_face_with_its_score_and_heatmap(chromium: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    run = train_face_run(make_face_dataset(tmp_path / "data"), tmp_path / "run")
    group = tmp_path / "group.png"
    face_picture(np.random.default_rng(5), 1, size=400, faces=4).save(group)
    with serving(run, tmp_path) as url:
        api = httpx.post(
            f"{url}/predict", files=[("files", (group.name, group.read_bytes(), "image/png"))]
        ).json()["results"][0]
        assert len(api["faces"]) == 4
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            page.wait_for_selector("#model-info:has-text('custom_cnn')")
            page.set_input_files("#file-input", str(group))
            card = page.locator(".result").first
            page.wait_for_selector(".result[data-prob]")
            assert card.locator(".verdict").inner_text() == f"{api['label']} (4 faces)"
            boxes = card.locator(".box")
            assert boxes.count() == 4 and card.locator(".faces li").count() == 4
            # Each box sits where the API says the face is, in % of the picture.
            x, y, w, h = api["faces"][1]["box"]
            left = boxes.nth(1).evaluate("e => e.style.left")
            assert left == f"{100 * x / api['width']}%"
            tag = boxes.nth(1).locator("span").inner_text()
            assert tag == f"2: {api['faces'][1]['label']} {api['faces'][1]['prob_fake']:.3f}"
            # A click picks the face whose Grad-CAM the toggle shows.
            boxes.nth(2).click()
            assert card.get_attribute("data-face") == "2"
            card.locator(".cam-toggle").check()
            page.wait_for_selector(".result[data-cam='on']")
            thumb = card.locator(".thumb")
            page.wait_for_function(
                "e => e.src.startsWith('blob:') && e.complete", arg=thumb.element_handle()
            )
            assert not card.locator(".boxes").is_visible()
            page.screenshot(path=str(tmp_path / "faces.png"), full_page=True)
            browser.close()


def test_page_shows_a_videos_timeline_top_frame_and_heatmap(chromium: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    run = train_face_run(make_face_dataset(tmp_path / "data"), tmp_path / "run")
    clip = write_clip(tmp_path / "clip.mp4", face_frames(40, size=160), fps=10)
    with serving(run, tmp_path) as url:
        api = httpx.post(
            f"{url}/predict", files=[("files", (clip.name, clip.read_bytes(), "video/mp4"))]
        ).json()["results"][0]
        assert api["kind"] == "video" and api["frames_used"] == 32
        top = api["top_frame"]
        assert top["prob_fake"] == max(f["prob_fake"] for f in api["frames"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            page.wait_for_selector("#model-info:has-text('custom_cnn')")
            page.set_input_files("#file-input", str(clip))
            page.wait_for_selector(".result[data-kind='video'][data-prob]")
            card = page.locator(".result").first
            assert card.locator(".verdict").inner_text() == f"{api['label']} (video, 32 frames)"
            assert float(card.get_attribute("data-prob")) == api["prob_fake"]
            # The timeline: one point per scored frame, where the API puts it.
            points = card.locator(".timeline polyline").get_attribute("points").split()
            assert len(points) == 32
            for point, frame in zip(points, api["frames"], strict=True):
                x, y = map(float, point.split(","))
                assert x == pytest.approx(300 * frame["time"] / api["duration_s"], abs=0.01)
                assert y == pytest.approx(100 - 100 * frame["prob_fake"], abs=0.01)
            assert card.locator(".timeline circle.top").count() == 1
            # The highest-scoring frame, its face boxed, and its Grad-CAM.
            assert card.locator(".thumb").get_attribute("src").startswith("data:image/jpeg")
            assert card.locator(".box").count() == len(top["faces"]) == 1
            assert f"{top['time']:.2f} s" in card.locator(".prob").inner_text()
            card.locator(".cam-toggle").check()
            page.wait_for_selector(".result[data-cam='on']")
            thumb = card.locator(".thumb")
            page.wait_for_function(
                "e => e.src.startsWith('blob:') && e.complete", arg=thumb.element_handle()
            )
            page.screenshot(path=str(tmp_path / "video.png"), full_page=True)
            browser.close()
    assert (tmp_path / "video.png").stat().st_size > 5000
