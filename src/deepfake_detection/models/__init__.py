"""Detectors: one LightningModule per architecture, all implementing `BaseDetector`."""

from deepfake_detection.models.base import BaseDetector
from deepfake_detection.models.custom_cnn import CustomCNNDetector
from deepfake_detection.models.mobilenet_v2 import MobileNetV2Detector

__all__ = ["BaseDetector", "CustomCNNDetector", "MobileNetV2Detector"]
