"""The metadata that travels with an exported model: everything needed to use it correctly.

It is written as `model.json` beside the model file (and, for ONNX, also into the model's
own metadata), so a user of the file needs neither this package nor the training run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.errors import UserInputError
from deepfake_detection.files import atomic_write_bytes

#: The exported graph's input and output names.
INPUT_NAME, OUTPUT_NAME = "image", "prob_fake"
#: `format=` values and the file each one writes.
MODEL_FILES = {"onnx": "model.onnx", "torch_export": "model.pt2"}
#: Class index → name. Fake is the positive class: P(Fake) > threshold means Fake.
CLASSES = {0: "Real", 1: "Fake"}
METADATA_KEY = "deepfake_detection"


class ExportError(UserInputError):
    """An export that cannot be made or cannot be trusted (a failed parity check)."""


def spec_file(model_file: Path) -> Path:
    """`model.onnx` → `model.json`."""
    return model_file.with_suffix(".json")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ExportSpec:
    """How to feed the exported model and read its output."""

    format: str
    model: str
    preprocessing: dict[str, Any]
    threshold: float
    threshold_rule: str
    temperature: float | None
    source_checkpoint: str
    package_version: str
    torch_version: str
    input: dict[str, Any] = field(
        default_factory=lambda: {
            "name": INPUT_NAME,
            "shape": ["batch", 3, "image_size", "image_size"],
            "dtype": "float32",
            "meaning": "images after `preprocessing` (normalised RGB, NCHW)",
        }
    )
    output: dict[str, Any] = field(
        default_factory=lambda: {
            "name": OUTPUT_NAME,
            "shape": ["batch"],
            "dtype": "float32",
            "meaning": "P(Fake); an image is Fake when prob_fake > threshold",
        }
    )
    classes: dict[str, str] = field(default_factory=lambda: {str(k): v for k, v in CLASSES.items()})
    positive_class: str = "Fake"
    parity: dict[str, Any] = field(default_factory=dict)
    #: SHA-256 of `source_checkpoint`, so a later change to that file is noticed.
    source_sha256: str = ""
    #: {rule: threshold, validation FPR and TPR}: the thresholds a deployment may choose
    #: between (`operating_point=`), chosen on the training run's validation split.
    operating_points: dict[str, dict[str, Any]] | None = None
    #: What produced the model and its thresholds (`reports.protocol`).
    protocol: dict[str, Any] = field(default_factory=dict)
    #: An INT8 model's quantization: method, calibration, and its check against the float
    #: model on the run's test split; None for a float model.
    quantization: dict[str, Any] | None = None
    model_file: str = ""
    sha256: str = ""

    def embedded(self) -> str:
        """The JSON stored inside the model file: all but what depends on the file itself."""
        values = {k: v for k, v in asdict(self).items() if k not in {"model_file", "sha256"}}
        return json.dumps(values, sort_keys=True)

    def save(self, model_file: Path) -> Path:
        """Hash `model_file` and write `model.json` beside it; returns its path."""
        self.model_file, self.sha256 = model_file.name, sha256_of(model_file)
        path = spec_file(model_file)
        atomic_write_bytes(path, (json.dumps(asdict(self), indent=2) + "\n").encode())
        return path

    @classmethod
    def load(cls, model_file: Path, check_hash: bool = True) -> ExportSpec:
        """The spec beside `model_file`; the file must still hash to what was exported."""
        path = spec_file(model_file)
        if not path.is_file():
            raise ExportError(
                f"{model_file}: no {path.name} beside it (deepfake-export writes both); "
                "it holds the preprocessing and threshold the model needs"
            )
        try:
            values = json.loads(path.read_text())
            spec = cls(**values)
            Preprocessing.from_description(spec.preprocessing)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ExportError(f"{path}: not an export spec ({type(err).__name__}: {err})") from None
        if check_hash and sha256_of(model_file) != spec.sha256:
            raise ExportError(
                f"{model_file}: its SHA-256 differs from the one in {path.name}; the file "
                "changed after export (export it again)"
            )
        return spec
