"""Weights a run leaves behind, written atomically like every other output."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from deepfake_detection.files import atomic_write_bytes


def save_state_dict(path: str | Path, net: nn.Module) -> Path:
    """Save a plain, contiguous `state_dict` that loads into the bare architecture."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
