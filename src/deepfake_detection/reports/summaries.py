"""The few lines a command ends with: the key metrics, where the outputs are, what to run next.

The full record stays in `metrics.json` and the run's log file.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when below it (shorter to copy), quoted
    for a shell when it needs to be."""
    path = Path(path)
    try:
        text = str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.4f}"


def _thresholded(metrics: Mapping[str, Any], split: str, suffix: str = "") -> str:
    """`acc … precision … recall … F1 …` of `<split>/<name><suffix>` keys."""
    value = lambda name: _number(metrics.get(f"{split}/{name}{suffix}"))  # noqa: E731
    return (
        f"acc {_with_interval(metrics, f'{split}/acc{suffix}')}  "
        f"precision {value('precision')}  recall {value('recall')}  F1 {value('f1')}"
    )


def _with_interval(metrics: Mapping[str, Any], key: str) -> str:
    """`0.9933 [0.9901, 0.9958]` from `key` and its bootstrap interval `key_ci`, when kept."""
    interval = metrics.get(f"{key}_ci")
    shown = _number(metrics.get(key))
    if isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval:
        shown += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
    return shown


def metric_lines(metrics: Mapping[str, Any], split: str) -> list[str]:
    """`acc … F1 … at threshold t`, `AUROC … AP … EER …` (with 95 % intervals when kept) and
    the TPR at 1 % and 0.1 % FPR, for `<split>/<name>` keys."""
    value = lambda name: _number(metrics.get(f"{split}/{name}"))  # noqa: E731
    images = sum(int(metrics.get(f"{split}/{k}", 0)) for k in ("tp", "fp", "tn", "fn"))
    lines = [
        f"  {images} images: {_thresholded(metrics, split)}  "
        f"(Fake when P(Fake) > {metrics.get(f'{split}/threshold', 0.5):g})",
        f"  AUROC {_with_interval(metrics, f'{split}/auroc')}  "
        f"AP {_with_interval(metrics, f'{split}/ap')}  EER {value('eer')}",
    ]
    if f"{split}/tpr@fpr0.01" in metrics:
        lines.append(
            f"  TPR at 1 % FPR {value('tpr@fpr0.01')}, at 0.1 % FPR {value('tpr@fpr0.001')}"
        )
    return lines


def train_summary(
    metrics: Mapping[str, Any], run_dir: str | Path, log_file: str, next_steps: bool = True
) -> str:
    """What `python -m train` ends with; `next_steps=False` leaves out the commands to run
    next (a sweep job, whose sweep ends with its comparison table)."""
    run = shown_path(run_dir)
    epoch = metrics.get("best/epoch")
    best = (
        f"epoch {epoch} of {metrics.get('epochs')}, "
        f"{metrics.get('best/monitor')} {_number(metrics.get('best/score'))}"
        if epoch is not None
        else "no checkpoint was selected; the last weights"
    )
    lines = [
        f"test metrics of the best checkpoint ({best}):",
        *metric_lines(metrics, "test"),
        *low_fpr_lines(metrics),
        *per_source_lines(metrics),
    ]
    threshold = metrics.get("val/threshold")
    if threshold is not None:
        at_val = _thresholded(metrics, "test", "@val")
        lines.insert(2, f"  at the validation threshold {threshold:.4g}: {at_val}")
    lines.append(f"run dir: {run}{os.sep}  (full record: metrics.json, {log_file})")
    if next_steps:
        lines += [
            "next:",
            f"  tensorboard --logdir {run}",
            f"  deepfake-evaluate ckpt_path={run} threshold=val",
            f"  deepfake-predict ckpt_path={run} input=<image or folder>",
        ]
    return "\n".join(lines)


def evaluate_summary(metrics: Mapping[str, Any], split: str, output_dir: str | Path) -> str:
    """What `deepfake-evaluate` ends with; a split of one class (a false-positive audit)
    shows its rate at each operating point instead of the ranking metrics it cannot have."""
    one_class = metrics.get("one_class")
    head = f"{split} split of {metrics.get('data/root')}" + (
        f", perturbed: {metrics['perturb']}" if metrics.get("perturb", "clean") != "clean" else ""
    )
    if one_class:
        body = [
            f"  {metrics.get('data/images')} {one_class.capitalize()} images only: no AUROC "
            "(it needs both classes)",
        ]
    else:
        body = [*metric_lines(metrics, split), *per_source_lines(metrics)]
    points = metrics.get("operating_points") or {}
    return "\n".join(
        [
            f"{head}:",
            *body,
            *operating_point_lines(points, one_class),
            f"outputs in {shown_path(output_dir)}{os.sep}",
        ]
    )


def roots_summary(
    blocks: Mapping[str, Mapping[str, Any]],
    mean: Mapping[str, Any],
    split: str,
    output_dir: str | Path,
) -> str:
    """What `deepfake-evaluate data.test_roots=[...]` ends with: a line per root, the mean."""
    lines = [f"{split} split of {len(blocks)} roots, at one threshold:"]
    width = max(len(name) for name in [*blocks, "mean"])
    for name, block in blocks.items():
        lines.append(
            f"  {name:<{width}}  AUROC {_number(block.get(f'{split}/auroc'))}  acc "
            f"{_number(block.get(f'{split}/acc'))}  real acc "
            f"{_number(block.get(f'{split}/real_acc'))}  ({block.get('data/images')} images)"
        )
    lines.append(
        f"  {'mean':<{width}}  AUROC {_number(mean.get('auroc'))}  acc "
        f"{_number(mean.get('acc'))}  real acc {_number(mean.get('real_acc'))}"
    )
    lines.append(f"outputs in {shown_path(output_dir)}{os.sep} (one folder per root in roots/)")
    return "\n".join(lines)


def low_fpr_lines(metrics: Mapping[str, Any], rule: str = "val_fpr:0.01") -> list[str]:
    """What the test split does at the threshold that flagged 1 % of validation reals."""
    row = (metrics.get("test/operating_points") or {}).get(rule)
    if not row or row.get("fpr") is None or row.get("tpr") is None:
        return []
    return [
        f"  at {rule} (threshold {row['threshold']:.4g}): test FPR {100 * row['fpr']:.2f} %, "
        f"TPR {100 * row['tpr']:.2f} %"
    ]


def per_source_lines(metrics: Mapping[str, Any]) -> list[str]:
    """`N sources: mAP … mean acc …` when the scored split had source folders."""
    per_source = metrics.get("per_source")
    if not per_source:
        return []
    mean = per_source["mean"]
    return [
        f"  {mean['sources']} sources: mAP {_number(mean['ap'])}  mean acc "
        f"{_number(mean['acc'])}  mean AUROC {_number(mean['auroc'])}  (per_source.md)"
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _interval(interval: list[float] | None) -> str:
    if interval is None:
        return ""
    return f"[{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"


def operating_point_lines(
    table: Mapping[str, Mapping[str, Any]], one_class: str | None = None
) -> list[str]:
    """A line per operating point: threshold, this split's FPR and TPR (with intervals), and
    what validation promised. A one-class split shows its one rate."""
    if not table:
        return []
    width = max(len(name) for name in table)
    if one_class == "real":
        head = "false-positive rate of these reals at each operating point (95 % interval):"
    elif one_class == "fake":
        head = "detection rate of these fakes at each operating point (95 % interval):"
    else:
        head = "at each operating point (FPR on reals, TPR on fakes, 95 % intervals):"
    lines = [f"  {head}"]
    for name, row in table.items():
        parts = [f"    {name:<{width}}  > {row['threshold']:.4g}"]
        if one_class != "fake":
            parts.append(
                f"FPR {_percent(row['fpr'])} ({row['false_positives']}/{row['reals']}) "
                f"{_interval(row['fpr_ci'])}"
            )
        if one_class != "real":
            parts.append(
                f"TPR {_percent(row['tpr'])} ({row['detected']}/{row['fakes']}) "
                f"{_interval(row['tpr_ci'])}"
            )
        promised = row.get("val_fpr") if one_class != "fake" else row.get("val_tpr")
        if promised is not None:
            what = "FPR" if one_class != "fake" else "TPR"
            parts.append(f"(validation {what} {_percent(promised)})")
        lines.append("  ".join(parts))
    return lines
