"""`audit.md`: the report a person reads, printed too; audit.json has every row it cuts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from deepfake_detection.auditing.audit_report import AuditReport
from deepfake_detection.auditing.duplicates import ExactGroup, NearPair
from deepfake_detection.auditing.inventory import LABELS, ImageFile
from deepfake_detection.auditing.shortcuts import feature_label, warning
from deepfake_detection.auditing.stats import IMBALANCE_THRESHOLD

#: Rows shown per list; the rest are counted and left to audit.json.
MAX_EXAMPLES = 20
#: Rows of the image size table.
TOP_SIZES = 10

T = TypeVar("T")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _examples(items: Sequence[T], show: Callable[[T], str]) -> list[str]:
    lines = [f"- {show(item)}" for item in items[:MAX_EXAMPLES]]
    if len(items) > MAX_EXAMPLES:
        lines.append(f"- ... and {len(items) - MAX_EXAMPLES} more (see audit.json)")
    return lines


def _where(image: ImageFile) -> str:
    return f"`{image.path}` ({image.split}/{image.label})"


def _imbalance_cell(entry: dict) -> str:
    if entry["majority"] is None:
        return "balanced" if entry["ratio"] is not None else "-"
    ratio = "inf" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
    flag = f" **over {IMBALANCE_THRESHOLD}**" if entry["imbalanced"] else ""
    return f"{ratio} ({entry['majority']}){flag}"


def _counts(report: AuditReport) -> list[str]:
    rows = [
        [split, *(per_class[label] for label in LABELS), per_class["total"]]
        + [_imbalance_cell(report.imbalance[split])]
        for split, per_class in report.counts.items()
    ]
    totals = [sum(report.counts[s][label] for s in report.splits) for label in (*LABELS, "total")]
    rows.append(["**total**", *totals, ""])
    lines = _table(["split", *LABELS, "total", "majority/minority"], rows)
    if report.missing_class_folders:
        lines += ["", "Missing class folders: " + ", ".join(report.missing_class_folders)]
    return lines


def _sizes_and_modes(report: AuditReport) -> list[str]:
    sizes = report.image_sizes["overall"]
    readable = sum(sizes.values())
    if not readable:
        return ["No readable images."]
    rows = [[size, n, f"{100 * n / readable:.1f}%"] for size, n in list(sizes.items())[:TOP_SIZES]]
    lines = [f"{len(sizes)} distinct size(s); the most common:", ""]
    lines += _table(["size (WxH)", "images", "share"], rows)
    modes = ", ".join(f"{mode}: {n}" for mode, n in report.image_modes["overall"].items())
    return [*lines, "", f"Modes: {modes}"]


def _problems(report: AuditReport) -> list[str]:
    lines = []
    sections = [
        ("unreadable image(s)", report.unreadable, lambda u: f"`{u['path']}`: {u['reason']}"),
        ("non-image file(s) in class folders", report.non_image, lambda p: f"`{p}`"),
        ("stray file(s) outside <split>/{Fake,Real}/", report.stray, lambda p: f"`{p}`"),
    ]
    for title, items, show in sections:
        lines += [f"**{len(items)} {title}**", *_examples(items, show), ""]
    lines.append(
        f"{report.ignored_system_files} ignored system file(s) "
        "(hidden entries, Thumbs.db, desktop.ini, __MACOSX)."
    )
    return lines


def _group_line(group: ExactGroup) -> str:
    tags = ["across splits"] * group.cross_split + ["label conflict"] * group.label_conflict
    prefix = f"**{', '.join(tags)}** " if tags else ""
    return f"{prefix}{group.sha256[:12]}: " + ", ".join(_where(f) for f in group.files)


def _pair_line(pair: NearPair) -> str:
    tags = ["across splits"] * pair.cross_split + ["label conflict"] * pair.label_conflict
    prefix = f"**{', '.join(tags)}** " if tags else ""
    return f"{prefix}distance {pair.distance}: {_where(pair.a)} ~ {_where(pair.b)}"


def _duplicates(report: AuditReport) -> list[str]:
    summary = report.summary
    groups = sorted(report.exact_groups, key=lambda g: (not g.cross_split, not g.label_conflict))
    lines = [
        "### Exact duplicates (same bytes)",
        "",
        f"{summary['exact_groups']} group(s) of {summary['exact_duplicate_files']} files: "
        f"{summary['exact_cross_split_groups']} across splits, "
        f"{summary['exact_label_conflict_groups']} with a label conflict.",
        *_examples(groups, _group_line),
        "",
        "### Near duplicates (perceptual hash)",
        "",
    ]
    if not report.near_checked:
        return [*lines, "Not checked (audit.near_duplicates=false)."]
    settings = report.settings
    bits = settings.get("hash_size", 8) ** 2
    pairs = sorted(report.near_pairs, key=lambda p: (not p.cross_split, p.distance))
    truncated = " (stopped counting there: see near_pairs_truncated)" * report.near_truncated
    return [
        *lines,
        f"{summary['near_pairs']} pair(s) of different files within Hamming distance "
        f"{settings.get('max_distance')} of {bits} bits: {summary['near_cross_split_pairs']} "
        f"across splits, {summary['near_label_conflict_pairs']} with different labels"
        f"{truncated}.",
        *_examples(pairs, _pair_line),
    ]


def _top_features(entry: dict) -> str:
    shown = [f"{feature_label(f['feature'])} {f['auroc']:.2f}" for f in entry["top_features"]]
    return ", ".join(shown) or "none (every file alike)"


def _shortcut_status(entry: dict, level: float) -> str:
    if entry["warned"]:
        return "**WARNING**"
    if entry["auroc"] > level:
        return "above the level, but within chance for this many images"
    return "ok"


def _shortcut_row(split: str, entry: dict, level: float) -> list[object]:
    if entry.get("skipped"):
        return [split, entry["images"], "-", "-", "-", f"skipped: {entry['skipped']}"]
    auroc, chance = f"{entry['auroc']:.2f}", f"{min(entry['chance_auroc'], 1):.2f}"
    status = _shortcut_status(entry, level)
    return [split, entry["images"], auroc, chance, _top_features(entry), status]


def _shortcut_headline(report: AuditReport) -> list[str]:
    """A line under the verdict naming the splits with a shortcut, detailed further down."""
    splits = report.shortcut_splits
    if not splits:
        return []
    entries = report.shortcuts["splits"]
    where = ", ".join(f"{split} (AUROC {entries[split]['auroc']:.2f})" for split in splits)
    return [
        f"**WARNING: file metadata alone tells Fake from Real in {where}: see Shortcut check**",
        "",
    ]


def _shortcuts(report: AuditReport) -> list[str]:
    check = report.shortcuts
    if not check.get("checked"):
        return ["Not checked (audit.shortcuts=false)."]
    level = check["settings"]["warn_auroc"]
    splits = check["splits"]
    rows = [_shortcut_row(split, entry, level) for split, entry in splits.items()]
    folds = check["settings"]["folds"]
    lines = [
        f"{folds}-fold cross-validated AUROC of a classifier that sees only file metadata "
        "(format, JPEG quality and subsampling, EXIF, size, bytes per pixel), never the "
        f"pixels: 0.5 is chance, warned above {level} when chance alone could not reach it "
        '("chance up to"). Top features: the AUROC of each alone.',
        "",
        *_table(["split", "images", "AUROC", "chance up to", "top features", "status"], rows),
    ]
    contrasts = [
        f"- {split}: {entry['top_features'][0]['contrast']}"
        for split, entry in splits.items()
        if entry.get("top_features")
    ]
    if contrasts:
        lines += ["", "Top feature per split:", "", *contrasts]
    for split in report.shortcut_splits:
        lines += ["", f"**WARNING: {warning(split, splits[split], level)}**"]
    if check.get("unread"):
        lines += ["", f"{check['unread']} file(s) whose headers could not be read were left out."]
    return lines


def render(report: AuditReport) -> str:
    lines = [
        f"# Dataset audit: {report.root}",
        "",
        f"**{report.verdict}**",
        "",
        *_shortcut_headline(report),
        "## Images per split",
        "",
        f"Layout: {report.layout}.",
        "",
        *_counts(report),
        "",
        "## Image sizes",
        "",
        *_sizes_and_modes(report),
        "",
        "## Problems",
        "",
        *_problems(report),
        "",
        "## Duplicates",
        "",
        *_duplicates(report),
        "",
        "## Shortcut check",
        "",
        *_shortcuts(report),
    ]
    return "\n".join(lines) + "\n"
