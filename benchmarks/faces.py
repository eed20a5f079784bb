"""The face stage measured: detection rate per set and class, its speed, and reframed images.

    python benchmarks/faces.py detect --data <root> [--data <root> ...] [--detector yunet haar]
    python benchmarks/faces.py reframe --data <split folder> --out <folder>

`detect` runs each detector over every image under each `--data` folder and reports, per
folder of class folders (`Fake`/`Real`, `0_real`/`1_fake`), the share of images with a face,
the misses by class, and the stage's throughput (decode + detect + crop, one process, the
thread count OpenCV picks). Prints a Markdown table; writes benchmark_faces.json.

`reframe` writes, for each image of a folder tree, a 640 px picture with the image pasted at
40 % of its size at a seeded random place, on a background made of the image's own top-left
corner patch enlarged and blurred (so the pasted face is the only face): how a face in a
photo is framed, rather than a tight crop. The folder layout is kept, so the result is a
dataset `deepfake-evaluate data.root=` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from deepfake_detection.data.discovery import list_images
from deepfake_detection.data.images import load_rgb
from deepfake_detection.faces.settings import FaceSettings
from deepfake_detection.faces.stage import FaceStage

FAKE_NAMES = {"fake", "1_fake"}
CANVAS, SHARE, PATCH = 640, 0.4, 32


def class_of(path: Path) -> str:
    return "Fake" if path.parent.name.lower() in FAKE_NAMES else "Real"


def detect(roots: list[Path], detectors: list[str], limit: int | None) -> list[dict]:
    rows = []
    for root in roots:
        images = list_images(root)
        if limit:
            images = images[:: max(1, len(images) // limit)][:limit]
        for name in detectors:
            stage = FaceStage(FaceSettings(detector=name))
            found, total = defaultdict(int), defaultdict(int)
            started = time.perf_counter()
            for path in images:
                image = load_rgb(path)
                cls = class_of(path)
                total[cls] += 1
                found[cls] += bool(stage.crops(image))
            seconds = time.perf_counter() - started
            row = {
                "set": str(root),
                "detector": name,
                "images": len(images),
                "found": sum(found.values()),
                "rate": sum(found.values()) / max(1, len(images)),
                "missed_fake": total["Fake"] - found["Fake"],
                "missed_real": total["Real"] - found["Real"],
                "img_per_s": len(images) / seconds,
            }
            rows.append(row)
            print(
                f"| {root.name} | {name} | {row['images']} | {100 * row['rate']:.1f} % | "
                f"{row['missed_fake']} | {row['missed_real']} | {row['img_per_s']:.0f} |",
                flush=True,
            )
    return rows


def reframe_one(image: Image.Image, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    patch = image.crop((0, 0, min(PATCH, image.width), min(PATCH, image.height)))
    canvas = patch.resize((CANVAS, CANVAS), Image.BILINEAR).filter(ImageFilter.GaussianBlur(8))
    side = round(CANVAS * SHARE)
    pasted = image.resize((side, round(side * image.height / image.width)), Image.BILINEAR)
    x = int(rng.integers(0, CANVAS - pasted.width + 1))
    y = int(rng.integers(0, CANVAS - pasted.height + 1))
    canvas.paste(pasted, (x, y))
    return canvas


def reframe(source: Path, out: Path) -> int:
    count = 0
    for path in list_images(source):
        relative = path.relative_to(source)
        seed = int(hashlib.sha256(relative.as_posix().encode()).hexdigest()[:8], 16)
        target = (out / relative).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        reframe_one(load_rgb(path), seed).save(target)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect")
    d.add_argument("--data", type=Path, action="append", required=True)
    d.add_argument("--detector", nargs="+", default=["yunet", "haar"])
    d.add_argument("--limit", type=int, default=None, help="at most this many images per set")
    d.add_argument("--json", type=Path, default=Path("benchmark_faces.json"))
    r = sub.add_parser("reframe")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "reframe":
        print(f"{reframe(args.data, args.out)} reframed images in {args.out}")
        return
    print("| set | detector | images | face found | missed Fake | missed Real | img/s |")
    print("|---|---|---|---|---|---|---|")
    rows = detect(args.data, args.detector, args.limit)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
