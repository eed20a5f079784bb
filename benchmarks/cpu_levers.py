"""CPU levers for training speed, each timed against the framework's default in one run.

    python benchmarks/cpu_levers.py [--data <root>] [--per-class 160] [--image-size 224]

For each model mode (custom CNN; MobileNetV2 full, last 3 blocks, frozen) it times train steps
on real batches from the framework's own DataModule and model, changing one thing at a time:

- `torch.compile` of the network (inductor; the first steps include compiling);
- torch threads: 1 against every core;
- `channels_last` off;
- the DataLoader: 0, 1 and 2 workers, pinned memory, and images decoded once and kept in
  memory (`decode_all`) instead of decoded every epoch.

Figures are images per second over `--steps` steps after `--warmup` steps, the median of
`--rounds` rounds that alternate between the variants; the first warm-up, which includes
compiling, is reported apart. Data: `--data`/BENCH_DATA, else the generated demo set.
Prints a Markdown table and writes benchmark_levers.json. Ratios against the default in the
same run are what to compare: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.data.dataset import decode_all

MODES = {
    "cnn": ["model=custom_cnn"],
    "mnv2_full": ["model=mobilenet_v2", "freeze=none"],
    "mnv2_last3": ["model=mobilenet_v2", "freeze=last_n", "freeze.n=3"],
    "mnv2_frozen": ["model=mobilenet_v2", "freeze=backbone"],
}


def build(mode: str, args: argparse.Namespace, extra: list[str]) -> tuple[Any, Any]:
    weights = os.environ.get("MOBILENET_V2_WEIGHTS")
    overrides = [
        *MODES[mode],
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        *(["model.pretrained=false"] if mode != "cnn" and not weights else []),
        *extra,
    ]
    if args.data:
        overrides.append(f"data.root={args.data}")
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={args.work}", *overrides])
    torch.manual_seed(0)
    return instantiate(cfg.data), instantiate(cfg.model)


def time_steps(model, loader, steps: int, warmup: int) -> dict[str, float]:
    """Images per second of full train steps (load, forward, backward, Adam) after warmup."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = iter(_forever(loader))
    started = time.perf_counter()
    for _ in range(warmup):
        _step(model, optimizer, next(batches))
    warm = time.perf_counter() - started
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += _step(model, optimizer, next(batches))
    seconds = time.perf_counter() - started
    return {"img_s": images / seconds, "warmup_s": warm}


def _forever(loader):
    while True:
        yield from loader


def _step(model, optimizer, batch) -> int:
    images, targets = batch[0], batch[1]
    model.on_train_batch_start(batch, 0)
    loss = model.criterion(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return len(targets)


def loader_for(datamodule, workers: int, pin: bool, decoded: bool):
    datamodule.num_workers, datamodule.pin_memory = workers, pin
    dataset = datamodule.dataset("train", training=True)
    if decoded:
        dataset.decoded = decode_all(dataset.samples)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=datamodule.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        drop_last=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("BENCH_DATA"))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/deepfake-bench-levers")
    parser.add_argument("--json", default="benchmark_levers.json")
    args = parser.parse_args()
    args.image_size = args.image_size or (224 if args.data else 64)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    default_threads = torch.get_num_threads()

    variants: list[tuple[str, dict[str, Any]]] = [
        ("default (1 worker, channels_last)", {}),
        ("torch.compile", {"compile": True}),
        ("1 torch thread", {"threads": 1}),
        ("channels_last off", {"extra": ["model.channels_last=false"]}),
        ("0 workers", {"workers": 0}),
        ("2 workers", {"workers": 2}),
        ("pinned memory", {"pin": True}),
        ("decoded images kept in memory", {"decoded": True}),
    ]
    rows = []
    for mode in args.modes.split(","):
        # Every variant is built once, then timed in rounds that alternate between them, so
        # a slow moment of a shared machine does not land on one variant alone.
        built = []
        for name, variant in variants:
            datamodule, model = build(mode, args, variant.get("extra", []))
            loader = loader_for(
                datamodule,
                variant.get("workers", 1),
                variant.get("pin", False),
                variant.get("decoded", False),
            )
            if variant.get("compile"):
                model.net = torch.compile(model.net)
            built.append((name, variant, model, loader, []))
        for _ in range(args.rounds):
            for _name, variant, model, loader, figures in built:
                torch.set_num_threads(variant.get("threads", default_threads))
                figures.append(time_steps(model, loader, args.steps, args.warmup))
        torch.set_num_threads(default_threads)
        base = statistics.median(f["img_s"] for f in built[0][4])
        for name, _, _, _, figures in built:
            rate = statistics.median(f["img_s"] for f in figures)
            row = {
                "mode": mode,
                "variant": name,
                "img_s": round(rate, 2),
                "vs_default": round(rate / base, 3),
                "first_warmup_s": round(figures[0]["warmup_s"], 2),
                "rates": [round(f["img_s"], 2) for f in figures],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    print("\n| mode | variant | train img/s | vs default | first warm-up steps, s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['variant']} | {r['img_s']:.1f} | {r['vs_default']:.2f}x "
            f"| {r['first_warmup_s']:.1f} |"
        )
    settings = {**vars(args), "cores": cores, "torch": torch.__version__}
    Path(args.json).write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
