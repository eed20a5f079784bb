"""Training and batch-scoring speed of the framework against plain PyTorch loops.

`python -m train` against the same job as a plain loop (`benchmarks/plain_loop.py`), per model
and freeze setting, and `deepfake-predict` against a plain inference loop.

    python benchmarks/training.py [--data <dataset root>] [--modes cnn,mnv2_frozen,predict]
        [--repeats 3] [--epochs 3] [--per-class 160] [--image-size 224] [--no-cache]
    make bench ARGS="--modes cnn --repeats 1"

Both sides run as whole processes, alternating framework and plain in every repeat so that
drift on a shared machine hits both; every figure is the median over repeats. Each side
trains `--epochs` epochs with a validation pass per epoch and a checkpoint per epoch, then
tests: the framework its best checkpoint (test and val splits), the plain loop its last
weights (test split). Without `--data` (or BENCH_DATA) it uses the generated 64 px demo set.
With MOBILENET_V2_WEIGHTS set both sides start MobileNetV2 from those ImageNet weights, else
from random init (speed does not depend on the weights).

Per process: wall time, peak RSS (largest process of its tree), and per epoch the training
and validation seconds (framework: metrics.json `timing`; plain: the same structure). The
"overhead" is wall time outside those passes and the final scoring: imports, config, image
checks, checkpoints, artifacts. The frozen MobileNetV2 modes also run the framework with its
frozen-feature cache (`--cache`), rebuilt in every repeat so the first epoch pays for it.
Every figure is measured in this run, on this machine: compare ratios, not absolute times.
Prints Markdown tables and writes benchmark.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
PLAIN_LOOP = BENCH_DIR / "plain_loop.py"
SPLITS = {"train": ("Train", ("train",)), "val": ("Validation", ("validation", "valid", "val"))}
SPLITS["test"] = ("Test", ("test",))
CLASSES = ("Fake", "Real")

# Targets the summary checks; the framework must cost next to nothing over a plain loop.
TARGET_RATE = 0.95  # framework/plain later-epoch train img/s
TARGET_OVERHEAD_S = 3.0  # framework overhead minus plain overhead
TARGET_CACHED_PCT = 5.0  # freeze=backbone with the cache: later epoch as % of the first
TARGET_CACHED_SPEEDUP = 4.0  # freeze=last_n with the cache: plain later epoch / cached


@dataclass(frozen=True)
class Mode:
    """One row group: the same model and freeze setting on both sides."""

    label: str
    overrides: tuple[str, ...]  # framework
    plain: tuple[str, ...]  # plain_loop.py train
    cacheable: bool = False  # frozen blocks: the framework can cache their features

    @property
    def mobilenet(self) -> bool:
        return "model=mobilenet_v2" in self.overrides


MODES = {
    "cnn": Mode("custom_cnn", ("model=custom_cnn",), ("--model", "custom_cnn")),
    "mnv2_full": Mode(
        "mobilenet_v2 freeze=none",
        ("model=mobilenet_v2", "freeze=none"),
        ("--model", "mobilenet_v2", "--freeze", "none"),
    ),
    "mnv2_last3": Mode(
        "mobilenet_v2 freeze=last_n n=3",
        ("model=mobilenet_v2", "freeze=last_n", "freeze.n=3"),
        ("--model", "mobilenet_v2", "--freeze", "last_n", "--n", "3"),
        cacheable=True,
    ),
    "mnv2_frozen": Mode(
        "mobilenet_v2 freeze=backbone",
        ("model=mobilenet_v2", "freeze=backbone"),
        ("--model", "mobilenet_v2", "--freeze", "backbone"),
        cacheable=True,
    ),
}
PREDICT = "predict"
FRAMEWORK, PLAIN, CACHED = "framework", "plain", "framework+cache"


@dataclass(frozen=True)
class Settings:
    """What both sides are told; the framework's own defaults come from its conf/ files."""

    root: Path
    image_size: int
    batch_size: int
    workers: int
    epochs: int
    lr: float
    weight_decay: float
    crop_scale: tuple[float, float]
    flip_p: float
    crop_fraction: float
    seed: int
    weights: str | None


def framework_defaults() -> dict[str, Any]:
    """Adam, `augment=basic` and data defaults as the framework reads them, so the plain
    loop follows conf/ instead of a copy that could drift."""
    from deepfake_detection.config import config_dir

    conf = config_dir()

    def read(name: str) -> dict[str, Any]:
        return yaml.safe_load((conf / name).read_text())

    adam, augment, data = (
        read("optimizer/adam.yaml"),
        read("augment/basic.yaml"),
        read("data/default.yaml"),
    )
    return {
        "lr": float(adam["lr"]),
        "weight_decay": float(adam.get("weight_decay") or 0.0),
        "flip_p": float(augment["flip_p"]),
        "crop_scale": tuple(float(x) for x in data["crop_scale"]),
        "crop_fraction": float(data["eval_crop_fraction"]),
        "seed": int(read("train.yaml")["seed"]),
    }


def sh(args: list[str], cwd: Path, log: Path) -> dict[str, Any]:
    """Run one process to completion: exit code, wall seconds and peak RSS in MiB.

    `os.wait4` reports the child's peak RSS, or a reaped descendant's (DataLoader workers)
    when larger. Output goes to `log`, whose tail explains a failure.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    per_mib = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes there, KiB on Linux
    result = {
        "rc": process.returncode,
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / per_mib,
        "log": str(log),
    }
    if process.returncode != 0:
        result["error"] = error_summary(log.read_text(errors="replace"))
    return result


def error_summary(output: str) -> str:
    """The line that says what went wrong (Hydra and Python put it last), else the tail."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:300]
    return " | ".join(lines[-3:])[:300]


# --- data ---


def find_child(parent: Path, names: tuple[str, ...]) -> Path:
    for path in sorted(parent.iterdir()):
        if path.is_dir() and path.name.lower() in names:
            return path
    sys.exit(f"{parent}: no folder named any of {', '.join(names)}")


def class_files(root: Path, split: str, name: str) -> list[Path]:
    """A split's images of one class, sorted by name, as the framework lists them."""
    from deepfake_detection.data.discovery import list_images

    folder = find_child(find_child(root, SPLITS[split][1]), (name.lower(),))
    return list_images(folder)


def link_first(files: list[Path], count: int, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files[:count]:
        (folder / path.name).symlink_to(path.resolve())
    return min(count, len(files))


def make_subset(source: Path, per_class: int, eval_per_class: int, work: Path) -> dict:
    """`<work>/subset/{Train,Validation,Test}/{Fake,Real}`: links to the first files by name,
    so every run and every repeat sees the same images. Returns counts per split and class."""
    subset = work / "subset"
    shutil.rmtree(subset, ignore_errors=True)
    counts: dict[str, dict[str, int]] = {}
    for split, count in (("train", per_class), ("val", eval_per_class), ("test", eval_per_class)):
        counts[split] = {
            name: link_first(
                class_files(source, split, name), count, subset / SPLITS[split][0] / name
            )
            for name in CLASSES
        }
    return counts


def make_predict_images(source: Path, per_class: int, work: Path) -> int:
    """A folder of unlabelled test images for `deepfake-predict` (searched recursively)."""
    folder = work / "predict_images"
    shutil.rmtree(folder, ignore_errors=True)
    return sum(
        link_first(class_files(source, "test", name), per_class, folder / name) for name in CLASSES
    )


# --- training runs ---


def framework_args(mode: Mode, s: Settings, run_dir: Path) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "train",
        *mode.overrides,
        f"data.root={s.root}",
        f"data.image_size={s.image_size}",
        f"data.batch_size={s.batch_size}",
        f"data.num_workers={s.workers}",
        f"trainer.max_epochs={s.epochs}",
        "augment=basic",
        "early_stopping=none",
        "optimizer=adam",
        "logger=tensorboard",
        "progress.bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    if mode.mobilenet:  # the framework reads MOBILENET_V2_WEIGHTS itself
        args.append(f"model.pretrained={'true' if s.weights else 'false'}")
    return args


def run_framework(mode: Mode, s: Settings, work: Path, name: str, cached: bool) -> dict:
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    args = framework_args(mode, s, run_dir)
    if cached:
        cache_dir = work / "feature_cache"
        shutil.rmtree(cache_dir, ignore_errors=True)  # every repeat builds it again
        args += ["data.feature_cache=true", f"data.feature_cache_dir={cache_dir}"]
    result = sh(args, work, work / f"{name}.log")
    result["run_dir"] = str(run_dir)
    if result["rc"] == 0:
        timing = json.loads((run_dir / "metrics.json").read_text())["timing"]
        result.update(timing=timing, **figures(timing, result))
    return result


def run_plain(mode: Mode, s: Settings, work: Path, name: str) -> dict:
    out = work / f"{name}.json"
    args = [
        sys.executable,
        str(PLAIN_LOOP),
        "train",
        *mode.plain,
        f"--root={s.root}",
        f"--image-size={s.image_size}",
        f"--batch-size={s.batch_size}",
        f"--workers={s.workers}",
        f"--epochs={s.epochs}",
        f"--lr={s.lr}",
        f"--weight-decay={s.weight_decay}",
        "--crop-scale",
        *(str(x) for x in s.crop_scale),
        f"--flip-p={s.flip_p}",
        f"--crop-fraction={s.crop_fraction}",
        f"--seed={s.seed}",
        f"--run-dir={work / name}",
        f"--out={out}",
    ]
    if s.weights:
        args.append(f"--imagenet-weights={s.weights}")
    result = sh(args, work, work / f"{name}.log")
    if result["rc"] == 0:
        timing = json.loads(out.read_text())["timing"]
        result.update(timing=timing, **figures(timing, result))
    return result


def figures(timing: dict[str, Any], process: dict[str, Any]) -> dict[str, Any]:
    """Per-process figures from a `timing` record. A feature cache's build counts towards
    the first epoch, which is what a user waits for before the fast epochs begin."""
    epochs = [dict(row) for row in timing["epochs"]]
    cache_s = float(timing.get("feature_cache_s") or 0.0)
    if epochs:
        epochs[0]["train_s"] += cache_s
    epoch_s = [row["train_s"] + row["val_s"] for row in epochs]
    rates = [row["train_images"] / row["train_s"] if row["train_s"] > 0 else None for row in epochs]
    later_rates = [r for r in rates[1:] if r is not None]
    scoring_s = float(timing.get("best_checkpoint_scoring_s", timing.get("test_s", 0.0)))
    loop_s = sum(epoch_s) + scoring_s
    return {
        "first_epoch_s": epoch_s[0] if epoch_s else None,
        "later_epoch_s": statistics.median(epoch_s[1:]) if len(epoch_s) > 1 else None,
        "train_img_s_first": rates[0] if rates else None,
        "train_img_s_later": statistics.median(later_rates) if later_rates else None,
        "train_images": [row["train_images"] for row in epochs],
        "feature_cache_s": cache_s or None,
        "scoring_s": scoring_s,
        "loop_s": loop_s,
        "overhead_s": process["wall_s"] - loop_s,
    }


FIGURES = (
    "first_epoch_s",
    "later_epoch_s",
    "train_img_s_first",
    "train_img_s_later",
    "wall_s",
    "loop_s",
    "overhead_s",
    "peak_rss_mib",
    "feature_cache_s",
    "scoring_s",
    "scoring_img_s",
    "wall_img_s",
)


def medians(runs: list[dict]) -> dict[str, Any]:
    """Median of each figure over the repeats that succeeded; the errors of the others."""
    ok = [r for r in runs if r["rc"] == 0]
    out: dict[str, Any] = {"repeats_ok": len(ok), "errors": [r["error"] for r in runs if r["rc"]]}
    for key in FIGURES:
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def compare(side: dict, plain: dict, cached: bool) -> dict[str, float | None]:
    """Framework (or cached framework) medians against the plain loop's, same mode."""
    out = {
        "rate_first": ratio(side.get("train_img_s_first"), plain.get("train_img_s_first")),
        "rate_later": ratio(side.get("train_img_s_later"), plain.get("train_img_s_later")),
        "wall": ratio(side.get("wall_s"), plain.get("wall_s")),
        "extra_overhead_s": difference(side.get("overhead_s"), plain.get("overhead_s")),
    }
    if cached:
        later, first = side.get("later_epoch_s"), side.get("first_epoch_s")
        out["later_pct_of_first"] = 100 * later / first if later is not None and first else None
        out["later_speedup_vs_plain"] = ratio(plain.get("later_epoch_s"), later)
    return out


# --- predict ---


def predict_checkpoint(results: dict, mode_keys: list[str], s: Settings, work: Path) -> dict:
    """A MobileNetV2 run dir to score with (its model.pth loads into bare torchvision): one
    trained by this bench, else a throwaway two-batch run."""
    for key in mode_keys:
        if MODES[key].mobilenet:
            for run in results[key][FRAMEWORK]["runs"]:
                if run["rc"] == 0:
                    return {"rc": 0, "run_dir": run["run_dir"], "trained_for_predict": False}
    run_dir = work / "predict_ckpt"
    args = framework_args(MODES["mnv2_frozen"], s, run_dir)
    args = [a for a in args if not a.startswith("trainer.max_epochs=")]
    args += [
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=2",
    ]
    result = sh(args, work, work / "predict_ckpt.log")
    return {**result, "run_dir": str(run_dir), "trained_for_predict": True}


def run_predict_framework(ckpt: Path, images: Path, s: Settings, work: Path, i: int) -> dict:
    out = work / f"predict_fw_{i}"
    shutil.rmtree(out, ignore_errors=True)
    args = [
        sys.executable,
        "-m",
        "deepfake_detection.predict",
        f"ckpt_path={ckpt}",
        f"input={images}",
        f"data.batch_size={s.batch_size}",
        f"data.num_workers={s.workers}",
        f"hydra.run.dir={out}",
    ]
    result = sh(args, work, work / f"predict_fw_{i}.log")
    if result["rc"] == 0:
        summary = json.loads((out / "predict.json").read_text())
        result.update(images=summary["images"], scoring_s=summary["seconds"])
        result["csv"] = str(out / "predictions.csv")
        result.update(predict_figures(result))
    return result


def run_predict_plain(ckpt: Path, images: Path, s: Settings, work: Path, i: int) -> dict:
    out, table = work / f"predict_plain_{i}.json", work / f"predict_plain_{i}.csv"
    args = [
        sys.executable,
        str(PLAIN_LOOP),
        "predict",
        f"--weights={ckpt / 'model.pth'}",
        f"--input={images}",
        f"--image-size={s.image_size}",
        f"--batch-size={s.batch_size}",
        f"--workers={s.workers}",
        f"--crop-fraction={s.crop_fraction}",
        f"--csv={table}",
        f"--out={out}",
    ]
    result = sh(args, work, work / f"predict_plain_{i}.log")
    if result["rc"] == 0:
        summary = json.loads(out.read_text())
        result.update(images=summary["images"], scoring_s=summary["seconds"], csv=str(table))
        result.update(predict_figures(result))
    return result


def predict_figures(run: dict) -> dict[str, float | None]:
    scoring = run["scoring_s"]
    return {
        "scoring_img_s": run["images"] / scoring if scoring else None,
        "wall_img_s": run["images"] / run["wall_s"],
        "overhead_s": run["wall_s"] - scoring,
    }


def max_score_difference(a: str, b: str) -> float | None:
    """Largest |P(Fake)| difference between two prediction CSVs: both sides must score the
    same model on the same inputs, or the speed comparison means nothing."""

    def read(path: str) -> dict[str, float]:
        with open(path, newline="") as table:
            return {Path(r["path"]).name: float(r["prob_fake"]) for r in csv.DictReader(table)}

    first, second = read(a), read(b)
    if first.keys() != second.keys():
        return None
    return max((abs(first[k] - second[k]) for k in first), default=0.0)


# --- report ---


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def training_table(results: dict, mode_keys: list[str]) -> list[str]:
    lines = [
        "| mode | side | first epoch s | later epoch s | train img/s first | train img/s later "
        "| wall s | overhead s | peak RSS MiB | rate first fw/plain | rate later fw/plain "
        "| wall fw/plain | extra overhead s | later % of first | later speed-up vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in mode_keys:
        for side, entry in results[key].items():
            m = entry["median"]
            head = f"| {MODES[key].label} | {side} |"
            if not m["repeats_ok"]:
                lines.append(f"{head} error: {m['errors'][0]} |" + " |" * 12)
                continue
            cells = [
                fmt(m.get("first_epoch_s")),
                fmt(m.get("later_epoch_s")),
                fmt(m.get("train_img_s_first"), 1),
                fmt(m.get("train_img_s_later"), 1),
                fmt(m.get("wall_s"), 1),
                fmt(m.get("overhead_s"), 1),
                fmt(m.get("peak_rss_mib"), 0),
            ]
            r = entry.get("vs_plain") or {}
            if side != PLAIN:
                cells += [
                    fmt(r.get("rate_first"), 2, "x"),
                    fmt(r.get("rate_later"), 2, "x"),
                    fmt(r.get("wall"), 2, "x"),
                    fmt(r.get("extra_overhead_s"), 1),
                ]
            else:
                cells += [""] * 4
            if side == CACHED:
                cells += [
                    fmt(r.get("later_pct_of_first"), 1, "%"),
                    fmt(r.get("later_speedup_vs_plain"), 2, "x"),
                ]
            else:
                cells += [""] * 2
            lines.append(f"{head} " + " | ".join(cells) + " |")
    return lines


def predict_table(predict: dict) -> list[str]:
    lines = [
        "| side | images | scoring img/s | whole-process img/s | wall s | overhead s "
        "| peak RSS MiB | scoring fw/plain | whole-process fw/plain | extra overhead s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in (FRAMEWORK, PLAIN):
        m = predict[side]["median"]
        if not m["repeats_ok"]:
            lines.append(f"| {side} | error: {m['errors'][0]} |" + " |" * 8)
            continue
        r = predict.get("ratios", {}) if side == FRAMEWORK else {}
        cells = [
            str(predict["images"]),
            fmt(m.get("scoring_img_s"), 1),
            fmt(m.get("wall_img_s"), 1),
            fmt(m.get("wall_s"), 1),
            fmt(m.get("overhead_s"), 1),
            fmt(m.get("peak_rss_mib"), 0),
            fmt(r.get("scoring"), 2, "x") if r else "",
            fmt(r.get("wall_img_s"), 2, "x") if r else "",
            fmt(r.get("extra_overhead_s"), 1) if r else "",
        ]
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return lines


def check(name: str, value: float | None, target: float, higher: bool, unit: str) -> dict:
    if value is None:
        verdict = "n/a"
    else:
        verdict = "PASS" if (value >= target if higher else value <= target) else "MISS"
    return {
        "check": name,
        "value": value,
        "target": target,
        "higher_is_better": higher,
        "unit": unit,
        "verdict": verdict,
    }


def targets(results: dict, mode_keys: list[str]) -> list[dict]:
    """The goals: the framework trains as fast as a plain loop, costs at most a few seconds
    more per run, and its feature cache makes later epochs of frozen models nearly free."""
    checks = []
    for key in mode_keys:
        r = results[key][FRAMEWORK].get("vs_plain") or {}
        checks.append(
            check(
                f"{key}: later-epoch train rate framework/plain",
                r.get("rate_later"),
                TARGET_RATE,
                True,
                "x",
            )
        )
        checks.append(
            check(
                f"{key}: extra fixed overhead",
                r.get("extra_overhead_s"),
                TARGET_OVERHEAD_S,
                False,
                "s",
            )
        )
        cached = results[key].get(CACHED)
        if cached is None:
            continue
        c = cached.get("vs_plain") or {}
        if key == "mnv2_frozen":
            checks.append(
                check(
                    f"{key}+cache: later epoch as % of first",
                    c.get("later_pct_of_first"),
                    TARGET_CACHED_PCT,
                    False,
                    "%",
                )
            )
        else:
            checks.append(
                check(
                    f"{key}+cache: later epochs faster than plain's",
                    c.get("later_speedup_vs_plain"),
                    TARGET_CACHED_SPEEDUP,
                    True,
                    "x",
                )
            )
    return checks


def summary_line(c: dict, results: dict) -> str:
    op = ">=" if c["higher_is_better"] else "<="
    value = fmt(c["value"], 2 if c["unit"] == "x" else 1, c["unit"] if c["unit"] != "s" else " s")
    target = f"{c['target']:g}{' s' if c['unit'] == 's' else c['unit']}"
    line = f"- {c['check']}: {value} (target {op} {target}): {c['verdict']}"
    if c["verdict"] == "n/a":
        key = c["check"].split(":")[0]
        side = CACHED if key.endswith("+cache") else FRAMEWORK
        errors = results[key.removesuffix("+cache")].get(side, {}).get("median", {}).get("errors")
        line += f" ({errors[0]})" if errors else " (needs epochs >= 2 and both sides)"
    return line


def machine() -> dict[str, Any]:
    import lightning
    import torch
    import torchvision

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    git = ["git", "-C", str(BENCH_DIR.parent)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src", "conf"], capture_output=True, text=True
    )
    if commit.returncode == 0:
        info["git_commit"] = commit.stdout.strip()
        info["src_or_conf_modified"] = bool(dirty.stdout.strip())
    return info


def parse_modes(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - {*MODES, PREDICT})
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join([*MODES, PREDICT])}"
        )
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("BENCH_DATA"),
        help="dataset root with train/val/test splits of Fake/ and Real/ "
        "(default: BENCH_DATA, else the generated demo set)",
    )
    parser.add_argument(
        "--modes",
        type=parse_modes,
        default=[*MODES, PREDICT],
        help=f"comma list of {', '.join([*MODES, PREDICT])} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=160, help="train images per class")
    parser.add_argument(
        "--eval-per-class",
        type=int,
        help="val and test images per class (default: per-class/5, at least 8)",
    )
    parser.add_argument(
        "--predict-per-class",
        type=int,
        default=128,
        help="test-split images per class that predict scores",
    )
    parser.add_argument(
        "--image-size", type=int, help="default: 224 with --data, 64 for the demo set"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers, both sides")
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the frozen MobileNetV2 modes with data.feature_cache",
    )
    parser.add_argument("--work", type=Path, help="where subsets and runs go (default: temp)")
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        result = bench(args, work)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWritten: {args.json}")


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every run of the benchmark, in `work`; returns what benchmark.json holds."""
    if args.data:
        source = Path(args.data).expanduser().resolve()
    else:
        from deepfake_detection.data.demo import ensure_demo_dataset

        source = ensure_demo_dataset()
    eval_per_class = args.eval_per_class or max(8, args.per_class // 5)
    counts = make_subset(source, args.per_class, eval_per_class, work)
    settings = Settings(
        root=work / "subset",
        image_size=args.image_size or (224 if args.data else 64),
        batch_size=args.batch_size,
        workers=args.workers,
        epochs=args.epochs,
        weights=os.environ.get("MOBILENET_V2_WEIGHTS") or None,
        **framework_defaults(),
    )
    mode_keys = [m for m in args.modes if m in MODES]
    results: dict[str, dict[str, dict]] = {}
    for key in mode_keys:
        sides = [FRAMEWORK, PLAIN] + ([CACHED] if args.cache and MODES[key].cacheable else [])
        results[key] = {side: {"runs": []} for side in sides}
    for i in range(args.repeats):  # alternating sides, so drift on a shared machine hits both
        for key in mode_keys:
            mode = MODES[key]
            for side, entry in results[key].items():
                name = {FRAMEWORK: "fw", PLAIN: "plain", CACHED: "fwcache"}[side]
                name = f"{name}_{key}_{i}"
                if side == PLAIN:
                    run = run_plain(mode, settings, work, name)
                else:
                    run = run_framework(mode, settings, work, name, cached=side == CACHED)
                entry["runs"].append(run)
                status = f"{run['wall_s']:.1f} s" if run["rc"] == 0 else f"FAILED {run['error']}"
                print(f"[{i + 1}/{args.repeats}] {mode.label}, {side}: {status}", file=sys.stderr)
    for key in mode_keys:
        for entry in results[key].values():
            entry["median"] = medians(entry["runs"])
        plain = results[key][PLAIN]["median"]
        for side, entry in results[key].items():
            if side != PLAIN:
                entry["vs_plain"] = compare(entry["median"], plain, cached=side == CACHED)
        fw_images = {
            tuple(r["train_images"]) for r in results[key][FRAMEWORK]["runs"] if r["rc"] == 0
        }
        plain_images = {
            tuple(r["train_images"]) for r in results[key][PLAIN]["runs"] if r["rc"] == 0
        }
        if fw_images and plain_images and fw_images != plain_images:
            print(
                f"warning: {key}: train images per epoch differ: framework {fw_images}, "
                f"plain {plain_images}",
                file=sys.stderr,
            )

    predict = None
    if PREDICT in args.modes:
        predict = bench_predict(results, mode_keys, settings, args, source, work)

    checks = targets(results, mode_keys)
    print(
        f"\n{counts['train']['Fake'] + counts['train']['Real']} train images per epoch "
        f"({source}, {settings.image_size} px), batch {settings.batch_size}, "
        f"{settings.workers} worker(s), {settings.epochs} epochs, median of {args.repeats}; "
        f"{os.cpu_count()} CPU cores\n"
    )
    if mode_keys:
        print("\n".join(training_table(results, mode_keys)))
    if predict:
        print(
            f"\n`deepfake-predict` against a plain inference loop ({predict['images']} images, "
            f"max |P(Fake)| difference {fmt(predict.get('max_prob_difference'), 6)})\n"
        )
        print("\n".join(predict_table(predict)))
    if checks:
        print("\nTargets:")
        print("\n".join(summary_line(c, results) for c in checks))
    return {
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "data": str(source),
            "image_size": settings.image_size,
            "eval_per_class": eval_per_class,
            "lr": settings.lr,
            "weight_decay": settings.weight_decay,
            "crop_scale": settings.crop_scale,
            "flip_p": settings.flip_p,
            "crop_fraction": settings.crop_fraction,
            "seed": settings.seed,
            "imagenet_weights": bool(settings.weights),
            "subset": counts,
        },
        "machine": machine(),
        "training": results,
        "predict": predict,
        "targets": checks,
    }


def bench_predict(
    results: dict,
    mode_keys: list[str],
    s: Settings,
    args: argparse.Namespace,
    source: Path,
    work: Path,
) -> dict[str, Any]:
    """`deepfake-predict` and the plain loop's predict mode on the same run's weights, over
    images of the source's test split."""
    images = make_predict_images(source, args.predict_per_class, work)
    ckpt = predict_checkpoint(results, mode_keys, s, work)
    predict: dict[str, Any] = {
        "images": images,
        "checkpoint": ckpt,
        FRAMEWORK: {"runs": []},
        PLAIN: {"runs": []},
    }
    if ckpt["rc"] != 0:
        for side in (FRAMEWORK, PLAIN):
            predict[side]["runs"].append(ckpt)
    else:
        run_dir, folder = Path(ckpt["run_dir"]), work / "predict_images"
        for i in range(args.repeats):
            for side, run in ((FRAMEWORK, run_predict_framework), (PLAIN, run_predict_plain)):
                outcome = run(run_dir, folder, s, work, i)
                predict[side]["runs"].append(outcome)
                ok = outcome["rc"] == 0
                status = f"{outcome['wall_s']:.1f} s" if ok else f"FAILED {outcome['error']}"
                print(f"[{i + 1}/{args.repeats}] predict, {side}: {status}", file=sys.stderr)
    for side in (FRAMEWORK, PLAIN):
        predict[side]["median"] = medians(predict[side]["runs"])
    fw, plain = predict[FRAMEWORK]["median"], predict[PLAIN]["median"]
    predict["ratios"] = {
        "scoring": ratio(fw.get("scoring_img_s"), plain.get("scoring_img_s")),
        "wall_img_s": ratio(fw.get("wall_img_s"), plain.get("wall_img_s")),
        "extra_overhead_s": difference(fw.get("overhead_s"), plain.get("overhead_s")),
    }
    pairs = zip(predict[FRAMEWORK]["runs"], predict[PLAIN]["runs"], strict=True)
    ok = [(a, b) for a, b in pairs if a["rc"] == 0 and b["rc"] == 0]
    if ok:
        predict["max_prob_difference"] = max_score_difference(ok[0][0]["csv"], ok[0][1]["csv"])
    return predict


if __name__ == "__main__":
    main()
