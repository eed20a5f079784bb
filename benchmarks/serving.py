"""Scoring speed: `predict` on PyTorch against ONNX Runtime (the run with `backend=onnx`, and
its exported float and INT8 files), the model alone per backend, and the service's latency
over loopback with 1 and 8 concurrent clients.

    python benchmarks/serving.py [--ckpt <run dir>] [--data <folder of images>] [--images 512]
        [--soak 20000]

Without `--ckpt` it trains a throwaway MobileNetV2 (224 px, a few batches; speed does not
depend on the weights). Without `--data` (or BENCH_DATA) it scores generated 256 px JPEGs.
Every figure is measured in this run, on this machine: compare ratios, not absolute times.
Prints a Markdown table and writes benchmark_serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


def train_checkpoint(work: Path) -> Path:
    weights = os.environ.get("MOBILENET_V2_WEIGHTS")
    run_dir = work / "run"
    sh(
        [
            sys.executable,
            "-m",
            "train",
            "model=mobilenet_v2",
            f"model.pretrained={'true' if weights else 'false'}",
            "data.image_size=224",
            "trainer.max_epochs=1",
            "early_stopping=none",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2",
            f"hydra.run.dir={run_dir}",
        ],
        work,
    )
    return run_dir


def make_images(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((256, 256), Image.BILINEAR)
        noisy = np.clip(np.asarray(image) + rng.normal(0, 8, (256, 256, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def pick_images(source: Path, count: int, folder: Path) -> Path:
    """Links to the first `count` images under `source` (Fake and Real alike, name order)."""
    from deepfake_detection.data.discovery import list_images

    folder.mkdir(parents=True, exist_ok=True)
    files = list_images(source)
    step = max(1, len(files) // count)
    for i, path in enumerate(files[::step][:count]):
        (folder / f"{i:05d}{path.suffix}").symlink_to(path.resolve())
    return folder


def export_files(ckpt: Path, work: Path) -> dict[str, Path]:
    """The run exported as `deepfake-export format=onnx quantize=int8` writes it: model.onnx
    and model.int8.onnx. The accuracy limits are opened: a benchmark checkpoint is barely
    trained, and speed does not depend on its weights."""
    out = work / "export"
    sh(
        [
            sys.executable,
            "-m",
            "deepfake_detection.export",
            f"ckpt_path={ckpt}",
            "format=onnx",
            "quantize=int8",
            "quantization.max_auroc_drop=1",
            "quantization.max_acc_drop=1",
            f"hydra.run.dir={out}",
        ],
        work,
    )
    return {"export": out / "model.onnx", "export int8": out / "model.int8.onnx"}


#: What `deepfake-predict` scores with, per row: the run on each backend (ONNX through the
#: export `backend=onnx` keeps between runs), and the exported files themselves.
PREDICT_WAYS = ("torch", "onnx", "export", "export int8")


def time_predict(ckpt: Path, images: Path, way: str, work: Path, files: dict[str, Path]) -> dict:
    out = work / f"predict-{way.replace(' ', '-')}-{time.monotonic_ns()}"
    model = [f"ckpt_path={files[way]}"] if way in files else [f"ckpt_path={ckpt}", f"backend={way}"]
    started = time.perf_counter()
    sh(
        [
            sys.executable,
            "-m",
            "deepfake_detection.predict",
            *model,
            f"input={images}",
            f"hydra.run.dir={out}",
        ],
        work,
    )
    wall = time.perf_counter() - started
    summary = json.loads((out / "predict.json").read_text())
    return {"wall_s": wall, "scoring_img_s": summary["images_per_s"], "images": summary["images"]}


def model_only(ckpt: Path, work: Path, batch: int = 32, repeats: int = 5) -> dict:
    """img/s of the model alone on a preprocessed batch, per backend."""
    import torch

    from deepfake_detection.detector.formats import WRITERS, ProbabilityModel, load_runner
    from deepfake_detection.detector.loading import (
        load_checkpoint,
        rebuild_detector,
        resolve_checkpoint,
    )
    from deepfake_detection.exporting.quantize import quantize_file
    from deepfake_detection.exporting.settings import QuantizationSettings

    ckpt_file, _ = resolve_checkpoint(ckpt)
    detector = rebuild_detector(load_checkpoint(ckpt_file), ckpt_file).eval()
    inputs = torch.randn(batch, 3, 224, 224)
    runners = {}
    with torch.inference_mode():
        runners["torch (eager, channels_last)"] = lambda x: torch.sigmoid(detector(x))
    for fmt, name in (("torch_export", "torch.export"), ("onnx", "ONNX Runtime")):
        path = work / ("model.pt2" if fmt == "torch_export" else "model.onnx")
        WRITERS[fmt](ProbabilityModel(detector).eval(), inputs[:2], path)
        runners[name] = load_runner(path, fmt)
    # INT8 as `deepfake-export quantize=int8` writes it (its speed does not depend on what
    # it was calibrated on, so random inputs stand in for validation images here).
    calibration = np.random.default_rng(0).normal(size=(32, 3, 224, 224)).astype(np.float32)
    int8 = work / "model.int8.onnx"
    quantize_file(work / "model.onnx", int8, QuantizationSettings(), calibration)
    runners["ONNX Runtime INT8"] = load_runner(int8, "onnx")
    results = {}
    for name, run in runners.items():
        with torch.inference_mode():
            run(inputs)  # warm-up
            run(inputs[:1])
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                run(inputs)
                times.append(time.perf_counter() - started)
            single = []
            for _ in range(repeats * 4):
                started = time.perf_counter()
                run(inputs[:1])
                single.append(time.perf_counter() - started)
        results[name] = {
            "batch_img_s": batch / statistics.median(times),
            "one_image_ms": 1000 * statistics.median(single),
        }
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_latency(ckpt: Path, backend: str, image: Path, work: Path, requests: int) -> dict:
    import httpx

    process, url = start_service(ckpt, backend, work, name="serve")
    try:
        data = image.read_bytes()
        results = {}
        for clients in (1, 8):
            latencies: list[float] = []
            per_client = max(1, requests // clients)

            def client(per_client: int = per_client, latencies: list = latencies) -> None:
                with httpx.Client(timeout=60) as session:
                    for _ in range(per_client):
                        started = time.perf_counter()
                        response = session.post(
                            f"{url}/predict", files=[("files", (image.name, data, "image/jpeg"))]
                        )
                        latencies.append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text

            with httpx.Client() as warm:
                for _ in range(5):
                    warm.post(f"{url}/predict", files=[("files", (image.name, data, "image/jpeg"))])
            started = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            ms = np.array(latencies) * 1000
            results[clients] = {
                "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)),
                "requests_per_s": len(latencies) / elapsed,
            }
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)


def start_service(ckpt: Path, backend: str, work: Path, *overrides: str, name: str = "soak"):
    """A `deepfake-serve` process on a free port, once it answers /health: (process, url)."""
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepfake_detection.serve",
            f"ckpt_path={ckpt}",
            f"backend={backend}",
            f"port={port}",
            f"hydra.run.dir={work / f'{name}-{backend}'}",
            *overrides,
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the service did not start")


def resident_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak_uploads(image: Path) -> list[tuple[str, list | None, int]]:
    """(name, multipart files, weight): valid images and the malformed uploads a public
    service meets; 4 valid ones in every 10 requests' worth of weight."""
    data = image.read_bytes()
    return [
        ("valid jpeg", [("files", (image.name, data, "image/jpeg"))], 6),
        ("truncated jpeg", [("files", ("cut.jpg", data[: len(data) // 3], "image/jpeg"))], 1),
        ("random bytes", [("files", ("noise.jpg", os.urandom(4096), "image/jpeg"))], 1),
        ("empty file", [("files", ("empty.png", b"", "image/png"))], 1),
        ("text", [("files", ("notes.txt", b"not an image at all\n" * 50, "text/plain"))], 1),
        ("no files field", None, 1),
    ]


def soak(ckpt: Path, image: Path, work: Path, requests: int, clients: int = 8) -> dict:
    """`requests` requests from `clients` threads, valid images and malformed uploads mixed:
    the status codes, any 5xx, and the service's resident memory after the first 1,000
    requests and at the end."""
    import httpx

    process, url = start_service(ckpt, "onnx", work)
    kinds = soak_uploads(image)
    schedule = [kind for kind in kinds for _ in range(kind[2])]
    lock = threading.Lock()
    state: dict[str, Any] = {"done": 0, "statuses": {}, "rss_1000": None, "errors": []}
    per_client = requests // clients

    def client(number: int) -> None:
        with httpx.Client(timeout=60) as session:
            for i in range(per_client):
                name, files, _ = schedule[(number + i) % len(schedule)]
                try:
                    if files is None:
                        response = session.post(f"{url}/predict", data={"x": "1"})
                    else:
                        response = session.post(f"{url}/predict", files=files)
                    status = response.status_code
                except httpx.HTTPError as err:
                    status = f"error: {type(err).__name__}"
                with lock:
                    key = f"{name}: {status}"
                    state["statuses"][key] = state["statuses"].get(key, 0) + 1
                    state["done"] += 1
                    if state["done"] == 1000:
                        state["rss_1000"] = resident_mb(process.pid)

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        rss_end = resident_mb(process.pid)
    finally:
        process.terminate()
        process.wait()
    statuses = state["statuses"]
    server_errors = sum(
        count
        for key, count in statuses.items()
        if not key.rsplit(": ", 1)[1].isdigit() or int(key.rsplit(": ", 1)[1]) >= 500
    )
    return {
        "requests": state["done"],
        "clients": clients,
        "seconds": seconds,
        "statuses": dict(sorted(statuses.items())),
        "server_errors": server_errors,
        "rss_after_1000_mb": state["rss_1000"],
        "rss_end_mb": rss_end,
        "rss_growth": rss_end / state["rss_1000"] - 1 if state["rss_1000"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a training run dir (default: train one)")
    parser.add_argument("--data", type=Path, default=os.environ.get("BENCH_DATA"))
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="predict runs per backend")
    parser.add_argument("--requests", type=int, default=96, help="per latency measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmark_serving.json"))
    parser.add_argument(
        "--soak", type=int, default=20_000, help="requests of the soak run (0: no soak run)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        ckpt = args.ckpt.resolve() if args.ckpt else train_checkpoint(work)
        if args.data:
            images = pick_images(Path(args.data), args.images, work / "images")
        else:
            images = make_images(work / "images", args.images)
        one_image = next(iter(sorted(images.iterdir())))

        files = export_files(ckpt, work)
        predict_runs: dict[str, list[dict]] = {way: [] for way in PREDICT_WAYS}
        time_predict(ckpt, images, "onnx", work, files)  # `backend=onnx` exports once, here
        for _ in range(args.repeats):  # alternating, so drift on a shared machine hits all
            for way in predict_runs:
                predict_runs[way].append(time_predict(ckpt, images, way, work, files))
        predict = {
            backend: {
                key: statistics.median(run[key] for run in runs)
                for key in ("wall_s", "scoring_img_s", "images")
            }
            for backend, runs in predict_runs.items()
        }
        models = model_only(ckpt, work)
        service = {
            b: serve_latency(ckpt, b, one_image, work, args.requests) for b in ("torch", "onnx")
        }
        soaked = soak(ckpt, one_image, work, args.soak) if args.soak else None

    ratio = predict["onnx"]["scoring_img_s"] / predict["torch"]["scoring_img_s"]
    result = {
        "images": predict["torch"]["images"],
        "data": str(args.data) if args.data else "generated 256 px JPEGs",
        "cpu_count": os.cpu_count(),
        "predict": predict,
        "predict_onnx_over_torch": ratio,
        "model_only_batch32": models,
        "service_latency": service,
        "soak": soaked,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['images']} images ({result['data']}), {os.cpu_count()} CPU cores\n")
    print("| measurement | PyTorch | ONNX Runtime | ratio |")
    print("|---|---|---|---|")
    t, o = predict["torch"], predict["onnx"]
    print(
        f"| `deepfake-predict` scoring, img/s | {t['scoring_img_s']:.1f} | "
        f"{o['scoring_img_s']:.1f} | {ratio:.2f}x |"
    )
    print(
        f"| `deepfake-predict` whole process, s | {t['wall_s']:.1f} | {o['wall_s']:.1f} | "
        f"{t['wall_s'] / o['wall_s']:.2f}x |"
    )
    for way in ("export", "export int8"):
        e = predict[way]
        print(
            f"| `deepfake-predict ckpt_path=model{'.int8' if 'int8' in way else ''}.onnx`, "
            f"scoring img/s / whole process s | {t['scoring_img_s']:.1f} / {t['wall_s']:.1f} | "
            f"{e['scoring_img_s']:.1f} / {e['wall_s']:.1f} | "
            f"{e['scoring_img_s'] / t['scoring_img_s']:.2f}x / {t['wall_s'] / e['wall_s']:.2f}x |"
        )
    eager, ort = models["torch (eager, channels_last)"], models["ONNX Runtime"]
    print(
        f"| model alone, batch 32, img/s | {eager['batch_img_s']:.1f} | {ort['batch_img_s']:.1f} | "
        f"{ort['batch_img_s'] / eager['batch_img_s']:.2f}x |"
    )
    print(
        f"| model alone, one image, ms | {eager['one_image_ms']:.1f} | {ort['one_image_ms']:.1f} | "
        f"{eager['one_image_ms'] / ort['one_image_ms']:.2f}x |"
    )
    for clients in (1, 8):
        ts, os_ = service["torch"][clients], service["onnx"][clients]
        print(
            f"| `/predict` {clients} client(s), p50 / p95 ms | {ts['p50_ms']:.1f} / "
            f"{ts['p95_ms']:.1f} | {os_['p50_ms']:.1f} / {os_['p95_ms']:.1f} | |"
        )
        print(
            f"| `/predict` {clients} client(s), requests/s | {ts['requests_per_s']:.1f} | "
            f"{os_['requests_per_s']:.1f} | {os_['requests_per_s'] / ts['requests_per_s']:.2f}x |"
        )
    if soaked is not None:
        growth = soaked["rss_growth"]
        print(
            f"\nsoak ({soaked['requests']} requests, {soaked['clients']} clients, valid and "
            f"malformed uploads, {soaked['seconds']:.0f} s): {soaked['server_errors']} 5xx or "
            f"failed; resident memory {soaked['rss_after_1000_mb']:.0f} MB after 1,000 "
            f"requests, {soaked['rss_end_mb']:.0f} MB at the end ({100 * growth:+.1f} %)"
        )
        for key, count in soaked["statuses"].items():
            print(f"  {key}: {count}")
    q = models["ONNX Runtime INT8"]
    print(
        f"| model alone, batch 32, INT8 over float ONNX Runtime, img/s | {ort['batch_img_s']:.1f} "
        f"| {q['batch_img_s']:.1f} (INT8) | {q['batch_img_s'] / ort['batch_img_s']:.2f}x |"
    )
    te = models["torch.export"]
    print(
        f"\ntorch.export, model alone: {te['batch_img_s']:.1f} img/s at batch 32, "
        f"{te['one_image_ms']:.1f} ms for one image. Written: {args.out}"
    )


if __name__ == "__main__":
    main()
