"""Writing a detector as ONNX or a torch.export program, and running the written file.

Both formats get the same module: the detector's network followed by the sigmoid (and a
fitted temperature, if any), so the file maps normalised images straight to P(Fake). The
batch axis is dynamic: one exported file scores one image or a thousand.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deepfake_detection.detector.spec import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ExportError,
)

if TYPE_CHECKING:  # running an exported file needs no Lightning
    from deepfake_detection.models.base import BaseDetector

#: A loaded exported model: a float32 batch (N, 3, H, W) → P(Fake) (N,).
Runner = Callable[[torch.Tensor], torch.Tensor]


def failure_reason(err: BaseException) -> str:
    """The first line of an exception from deep inside a library, short enough for one line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def torch_runner(model: BaseDetector, temperature: float = 1.0) -> Runner:
    """The detector's own forward, as `predict` scores: P(Fake) in float32 on the CPU."""
    model = model.cpu().eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.sigmoid(model(batch).float() / temperature)

    return run


class ProbabilityModel(nn.Module):
    """`detector.net`, then sigmoid(logit / temperature): images in, P(Fake) out."""

    def __init__(self, detector: BaseDetector, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = detector.net
        self.temperature = float(temperature)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image)[:, 0] / self.temperature)


def _batch_dim() -> dict[str, dict[int, torch.export.Dim]]:
    return {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=4096)}}


def temporary_path(path: Path) -> Path:
    """`model.pt2` → `model.tmp.pt2`: written first, renamed when complete (torch.export
    wants the suffix kept)."""
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_onnx(module: ProbabilityModel, example: torch.Tensor, path: Path) -> None:
    """ONNX through the torch.export-based exporter (TorchScript is deprecated)."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; say so before it fails deep)
    except ImportError:
        raise ExportError(
            "format=onnx needs the onnx, onnxscript and onnxruntime packages: "
            "pip install 'deepfake-detection[export]'"
        ) from None
    with _quiet("onnxscript", "onnx_ir"):  # the optimiser logs every pass at INFO
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_batch_dim(),
            external_data=False,
            verbose=False,
        )


def embed_onnx_metadata(path: Path, metadata: str) -> None:
    """Store the export spec in the ONNX file's own metadata, under `deepfake_detection`."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    tmp = temporary_path(path)
    onnx.save(model, str(tmp))
    tmp.replace(path)


def onnx_metadata(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}


def write_torch_export(module: ProbabilityModel, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(
        module, (example,), dynamic_shapes=(_batch_dim()[INPUT_NAME],), strict=False
    )
    tmp = temporary_path(path)
    with warnings.catch_warnings():
        # The archive writer warns about weight groups it reads as incomplete (CPU weights are
        # saved all the same); the parity check right after reads every weight back.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, str(tmp))
    tmp.replace(path)


WRITERS = {"onnx": write_onnx, "torch_export": write_torch_export}


@dataclass(frozen=True)
class OnnxThreads:
    """How ONNX Runtime sessions of this process use the CPU.

    `threads`: its intra-op threads (None: ONNX Runtime's choice, one per core). `spinning`:
    whether idle threads busy-wait for the next batch. That saves microseconds per call but
    takes the cores from everything else, and every caller here does other work between
    batches: predict and evaluate decode the next images, the service its uploads. Off by
    default (on 2 cores, predict with an INT8 model scored 441 img/s with it off against 341
    with it on); the service's `cpu.spinning` can turn it back on.
    """

    threads: int | None = None
    spinning: bool = False


_onnx_threads = OnnxThreads()


def configure_onnx_threads(settings: OnnxThreads) -> None:
    """Sessions made after this call use `settings` (like `torch.set_num_threads`, for the
    whole process: the service sets it once at start-up)."""
    global _onnx_threads
    _onnx_threads = settings


def onnx_runner(path: Path, threads: int | None = None) -> Runner:
    """An ONNX Runtime session on the CPU, as a batch → P(Fake) function."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(
            "running an ONNX model needs onnxruntime: pip install 'deepfake-detection[serve]'"
        ) from None
    options = ort.SessionOptions()
    threads = threads or _onnx_threads.threads
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one graph, run op after op: no second pool
    if not _onnx_threads.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({failure_reason(err)})") from None

    def run(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])

    return run


def torch_export_runner(path: Path) -> Runner:
    try:
        module = torch.export.load(str(path)).module()
    except Exception as err:
        raise ExportError(f"{path}: torch.export cannot load it ({failure_reason(err)})") from None

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(batch.float())

    return run


def load_runner(path: Path, fmt: str) -> Runner:
    return onnx_runner(path) if fmt == "onnx" else torch_export_runner(path)
