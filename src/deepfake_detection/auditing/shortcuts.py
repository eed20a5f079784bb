"""Shortcut check: can file metadata alone tell Fake from Real?

A detector learns whatever separates the classes most easily. When fakes and reals were
saved differently (fakes as near-lossless JPEG, reals at quality 75; fakes as PNG, reals as
JPEG; fakes all 1024x1024), that is the encoder's trace, not the content, and a model that
scores well on such a test split may have learned nothing about faces. So the audit fits a
small classifier on metadata read from the file headers alone, per split, and reports its
cross-validated AUROC with the features that carry it.

Only headers are read (Pillow opens lazily): the check costs a fraction of the decoding the
rest of the audit does.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from deepfake_detection.auditing.inventory import LABELS, ImageFile
from deepfake_detection.auditing.settings import DEFAULT_SHORTCUT_WARN_AUROC

log = logging.getLogger(__name__)

#: Cross-validation folds (stratified: each fold holds both classes).
FOLDS = 5
#: Images of each class a split needs for the check: with fewer, even a perfect AUROC is
#: within what chance gives (see `chance_auroc`), and some folds would lack a class.
MIN_PER_CLASS = 8
#: Standard deviations of the AUROC under chance that a warned AUROC must clear.
CHANCE_SDS = 3.0
#: Features listed per split, most telling first.
TOP_FEATURES = 3

#: The standard (IJG, JPEG spec Annex K) luminance quantisation table, in natural order,
#: which libjpeg (and so Pillow, most cameras' software, and most datasets) scales by quality.
IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
).ravel()

#: Pillow's `get_sampling` codes, as people write them.
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
#: A JPEG whose sampling is none of those (grayscale, CMYK, 4:1:1, ...).
OTHER_SAMPLING = "other"


@dataclass(frozen=True)
class FileMeta:
    """What a file's headers say about how it was made; None where a field does not apply."""

    format: str
    width: int
    height: int
    bytes_per_pixel: float
    jpeg_quality: int | None  # estimated IJG quality; None: not a JPEG
    subsampling: str | None  # 4:4:4, 4:2:2, 4:2:0 or other; None: not a JPEG
    exif: bool


@dataclass(frozen=True)
class Feature:
    """One column the classifier sees: its name in audit.json, its name for people, and how
    it is read from a file's metadata."""

    name: str
    label: str
    value: Callable[[FileMeta], float]
    kind: str  # "category", "number" or "share"


# --- reading ---------------------------------------------------------------------------------


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes at `quality` (1..100), baseline-clamped to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMINANCE * scale + 50) // 100, 1, 255)


#: Row q - 1: the table of quality q, built once.
_IJG_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])


def estimate_jpeg_quality(table: Sequence[int]) -> int:
    """The IJG quality whose scaled table is closest to `table` (natural order, 64 values).

    Exact for files libjpeg wrote; for other encoders (cameras, Photoshop) the nearest IJG
    quality, which is still what tells two encoders apart.
    """
    values = np.asarray(table, dtype=np.int64)
    if values.size != 64:
        raise ValueError(f"a JPEG quantisation table has 64 values, not {values.size}")
    distance = np.abs(_IJG_TABLES - values).sum(axis=1)
    return int(np.argmin(distance)) + 1


def _jpeg_fields(image: Image.Image) -> tuple[int | None, str | None]:
    """(quality, subsampling) of a JPEG; (None, None) for any other format."""
    tables = getattr(image, "quantization", None)
    if not tables:
        return None, None
    quality = estimate_jpeg_quality(tables[min(tables)])  # the first table is luminance
    sampling = SUBSAMPLING.get(JpegImagePlugin.get_sampling(image), OTHER_SAMPLING)
    return quality, sampling


def read_meta(path: Path) -> FileMeta | None:
    """The header metadata of one file, without decoding its pixels; None when unreadable."""
    try:
        size = os.stat(path).st_size
        with warnings.catch_warnings():
            # The audit's own reader already judged the size; only headers are read here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                quality, sampling = _jpeg_fields(image)
                # `.info`, not `getexif()`: a PNG's EXIF may follow its pixels, and
                # `getexif()` would decode them to find it.
                exif = bool(image.info.get("exif"))
                fmt = image.format or "unknown"
    except Exception as err:  # any file Pillow cannot parse is left out
        log.debug("shortcut check: cannot read %s (%s)", path, err)
        return None
    pixels = max(width * height, 1)
    return FileMeta(fmt, width, height, size / pixels, quality, sampling, exif)


def read_all(root: Path, images: Sequence[ImageFile]) -> list[FileMeta | None]:
    """The metadata of each image, in order (headers only: fast enough in one process)."""
    return [read_meta(root / image.path) for image in images]


# --- features --------------------------------------------------------------------------------

#: Every file category is coded by this order; other formats share the last code.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")
#: Code of a missing value (non-JPEG quality or subsampling): below every real value.
MISSING = -1.0
_SAMPLING_CODES = {name: code for code, name in enumerate([*SUBSAMPLING.values(), OTHER_SAMPLING])}


def _format_code(meta: FileMeta) -> float:
    return float(FORMATS.index(meta.format) if meta.format in FORMATS else len(FORMATS))


def _quality_code(meta: FileMeta) -> float:
    return MISSING if meta.jpeg_quality is None else float(meta.jpeg_quality)


def _sampling_code(meta: FileMeta) -> float:
    return MISSING if meta.subsampling is None else float(_SAMPLING_CODES[meta.subsampling])


def _aspect(meta: FileMeta) -> float:
    return meta.width / max(meta.height, 1)


#: Formats whose file size says how hard they were compressed. A lossless file's size says
#: how busy its picture is, which is content, not a trace of how it was saved.
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})


def _bytes_per_pixel(meta: FileMeta) -> float:
    return meta.bytes_per_pixel if meta.format in LOSSY_FORMATS else MISSING


#: In order of cause before consequence: when two features separate equally well (JPEG
#: quality and the file size it leads to), the cause is named first.
FEATURES: tuple[Feature, ...] = (
    Feature("format", "format", _format_code, "category"),
    Feature("jpeg_quality", "JPEG quality", _quality_code, "number"),
    Feature("subsampling", "chroma subsampling", _sampling_code, "category"),
    Feature("exif", "EXIF present", lambda m: float(m.exif), "share"),
    Feature("width", "width", lambda m: float(m.width), "number"),
    Feature("height", "height", lambda m: float(m.height), "number"),
    Feature("aspect", "aspect ratio (width/height)", _aspect, "number"),
    Feature("bytes_per_pixel", "bytes per pixel (lossy formats)", _bytes_per_pixel, "number"),
)
_FORMAT_COLUMN = 0


def feature_matrix(metas: Sequence[FileMeta]) -> np.ndarray:
    """One row per file, one column per entry of FEATURES."""
    return np.array([[f.value(m) for f in FEATURES] for m in metas], dtype=np.float64).reshape(
        len(metas), len(FEATURES)
    )


# --- describing ------------------------------------------------------------------------------


def _raw(feature: Feature, meta: FileMeta) -> Any:
    """The value as people read it (a format name, a quality), None when it does not apply."""
    if feature.name == "format":
        return meta.format
    if feature.name == "subsampling":
        return meta.subsampling if meta.subsampling is not None else "none (not JPEG)"
    if feature.name == "jpeg_quality":
        return meta.jpeg_quality
    return feature.value(meta)


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:#.3g}"


def _describe_class(feature: Feature, values: list[Any]) -> str:
    """One class's side of a contrast: its median, most common value, or share."""
    present = [v for v in values if v is not None]
    if not present:
        return "no JPEG files" if feature.name == "jpeg_quality" else "no values"
    if feature.kind == "number":
        return f"median {_number(float(np.median(present)))}"
    if feature.kind == "share":
        return f"{100 * np.mean(present):.0f}%"
    value, count = Counter(present).most_common(1)[0]
    return f"{100 * count / len(present):.0f}% {value}"


def contrast(feature: Feature, by_class: dict[str, list[FileMeta]]) -> str:
    """e.g. "JPEG quality: Fake median 95, Real median 75": what differs, in which direction."""
    sides = [
        f"{label} {_describe_class(feature, [_raw(feature, m) for m in by_class[label]])}"
        for label in LABELS
    ]
    return f"{feature.label}: {', '.join(sides)}"


# --- fitting ---------------------------------------------------------------------------------


def _leaf_size(samples: int) -> int:
    """Smallest leaf: large enough not to fit single files on big splits, small enough that a
    split of a few dozen images can still be cut at all."""
    return max(1, min(20, samples // 20))


def _cross_validated_auroc(
    x: np.ndarray, y: np.ndarray, folds: int, seed: int, *, whole: bool
) -> float:
    """AUROC of out-of-fold Fake probabilities.

    `whole`: gradient-boosted trees on every feature (thresholds and interactions, e.g. "PNG
    and 1024 wide"); otherwise a shallow tree on the one column given.
    """
    # Imported here: scikit-learn takes a second to load, which `audit.shortcuts=false` skips.
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    leaf = _leaf_size(len(y))
    if whole:
        model = HistGradientBoostingClassifier(
            max_depth=3,
            min_samples_leaf=leaf,
            categorical_features=[_FORMAT_COLUMN],
            early_stopping=False,
            random_state=seed,
        )
    else:
        model = DecisionTreeClassifier(max_depth=3, min_samples_leaf=leaf, random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def _skip_reason(per_class: dict[str, int]) -> str | None:
    """Why a split is too small to check, or None when it is not."""
    few = [label for label in LABELS if per_class[label] < MIN_PER_CLASS]
    if not few:
        return None
    counts = ", ".join(f"{label}: {per_class[label]}" for label in LABELS)
    return (
        f"too few images to tell a shortcut from chance: needs at least {MIN_PER_CLASS} "
        f"readable images of each class ({counts})"
    )


def _of_class(metas: Sequence[FileMeta], labels: Sequence[str], label: str) -> list[FileMeta]:
    return [meta for meta, of in zip(metas, labels, strict=True) if of == label]


def chance_auroc(positives: int, negatives: int) -> float:
    """The AUROC that chance alone rarely exceeds with this many images of each class.

    0.5 plus CHANCE_SDS standard deviations of the Mann-Whitney statistic under no effect:
    on a split of 20 images a metadata classifier reaches 0.75 by luck now and then, on
    20,000 it does not. Cross-validated scores spread a little wider than this, so the
    margin is generous.
    """
    sd = ((positives + negatives + 1) / (12 * positives * negatives)) ** 0.5
    return 0.5 + CHANCE_SDS * sd


def check_split(
    metas: Sequence[FileMeta], labels: Sequence[str], *, seed: int, warn_auroc: float
) -> dict[str, Any]:
    """The check on one split: the whole model's AUROC, then each feature's alone.

    The AUROC is reported as fitted: a model picks the direction itself, so below 0.5 is
    chance (folds disagreeing), not metadata that predicts the classes inverted. The
    contrasts say which class has the higher value.
    """
    per_class = {label: sum(1 for lab in labels if lab == label) for label in LABELS}
    entry: dict[str, Any] = {"images": len(metas), **per_class}
    reason = _skip_reason(per_class)
    if reason:
        return {**entry, "skipped": reason, "warned": False}
    x = feature_matrix(metas)
    y = np.array([label == LABELS[0] for label in labels], dtype=np.int64)  # Fake is positive
    auroc = _cross_validated_auroc(x, y, FOLDS, seed, whole=True)
    chance = chance_auroc(per_class[LABELS[0]], per_class[LABELS[1]])
    varying = [i for i in range(len(FEATURES)) if np.ptp(x[:, i]) > 0]
    alone = {i: _cross_validated_auroc(x[:, [i]], y, FOLDS, seed, whole=False) for i in varying}
    ranked = sorted(varying, key=lambda i: -alone[i])[:TOP_FEATURES]  # stable: FEATURES order
    by_class = {label: _of_class(metas, labels, label) for label in LABELS}
    top = [
        {
            "feature": FEATURES[i].name,
            "auroc": round(alone[i], 4),
            "contrast": contrast(FEATURES[i], by_class),
        }
        for i in ranked
    ]
    return {
        **entry,
        "folds": FOLDS,
        "auroc": round(auroc, 4),
        "chance_auroc": round(chance, 4),
        "top_features": top,
        # Above the level only counts where chance could not have got there.
        "warned": auroc > max(warn_auroc, chance),
        "skipped": None,
    }


def check_shortcuts(
    root: Path,
    images: Sequence[ImageFile],
    splits: Sequence[str],
    *,
    seed: int,
    warn_auroc: float = DEFAULT_SHORTCUT_WARN_AUROC,
) -> dict[str, Any]:
    """The `shortcuts` section of audit.json: per split, whether metadata alone separates the
    classes (`images` are the readable ones: a file that does not decode is not trained on)."""
    metas = read_all(root, images)
    result: dict[str, Any] = {
        "checked": True,
        "settings": _settings(warn_auroc),
        "unread": sum(meta is None for meta in metas),
        "splits": {},
    }
    for split in splits:
        rows = [
            (meta, image.label)
            for meta, image in zip(metas, images, strict=True)
            if meta is not None and image.split == split
        ]
        entry = check_split(
            [meta for meta, _ in rows],
            [label for _, label in rows],
            seed=seed,
            warn_auroc=warn_auroc,
        )
        result["splits"][split] = entry
        if entry["warned"]:
            log.warning(warning(split, entry, warn_auroc))
    result["warned_splits"] = [s for s, e in result["splits"].items() if e["warned"]]
    return result


def not_checked(warn_auroc: float = DEFAULT_SHORTCUT_WARN_AUROC) -> dict[str, Any]:
    """The `shortcuts` section when `audit.shortcuts=false`."""
    return {"checked": False, "settings": _settings(warn_auroc), "splits": {}, "warned_splits": []}


def _settings(warn_auroc: float) -> dict[str, Any]:
    return {
        "warn_auroc": warn_auroc,
        "folds": FOLDS,
        "min_per_class": MIN_PER_CLASS,
        "chance_sds": CHANCE_SDS,
        "model": "HistGradientBoostingClassifier(max_depth=3)",
        "features": [feature.name for feature in FEATURES],
    }


def feature_label(name: str) -> str:
    """A feature's name for people, from its name in audit.json."""
    return next((f.label for f in FEATURES if f.name == name), name)


def warning(split: str, entry: dict[str, Any], warn_auroc: float) -> str:
    """The warning of a split above the level: what the model could learn, and the fix."""
    top = entry["top_features"]
    carried = f", carried most by {top[0]['contrast']}" if top else ""
    return (
        f"shortcut in {split}: file metadata alone tells Fake from Real with "
        f"AUROC {entry['auroc']:.2f} (above {warn_auroc}){carried}. A model can learn how "
        "the files were saved instead of what they show. Re-encode both classes the same way "
        "(same format, JPEG quality, subsampling and size), e.g. train with augment=deepfake "
        "augment.jpeg_p=1.0 so every image is re-compressed, or fix the dataset."
    )
