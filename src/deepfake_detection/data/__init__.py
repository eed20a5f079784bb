"""Fake/Real image folders: discovery, decoding, transforms and the DataModule."""

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.discovery import CLASS_LABELS, DatasetIndex, discover

__all__ = ["CLASS_LABELS", "DatasetIndex", "DeepfakeDataModule", "discover"]
