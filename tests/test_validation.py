"""Up-front config validation: every shipped config passes, every rule rejects a bad value."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from conftest import compose_config, compose_train
from deepfake_detection.auditing.settings import AUDIT_RULES, validate_audit_config
from deepfake_detection.errors import ConfigError
from deepfake_detection.evaluation.settings import EVALUATE_RULES, validate_evaluate_config
from deepfake_detection.exporting.settings import EXPORT_RULES, validate_export_config
from deepfake_detection.prediction.settings import PREDICT_RULES, validate_predict_config
from deepfake_detection.rules import config_problems, show
from deepfake_detection.serving.settings import SERVE_RULES, validate_serve_config
from deepfake_detection.training.settings import TRAIN_RULES, validate_train_config

#: Composed train configs that must pass as shipped; together they pick every option of
#: every group (composing takes ~0.1 s each, so options share configs).
TRAIN_VARIANTS: dict[str, list[str]] = {
    "default": [],  # custom_cnn, freeze=none, adam, no scheduler, early stopping on val/loss
    "mobilenet": [
        "model=mobilenet_v2",
        "freeze=backbone",
        "optimizer=adamw",
        "scheduler=cosine",
        "early_stopping=none",
    ],
    "sgd": ["freeze=last_n", "optimizer=sgd", "scheduler=step", "early_stopping=val_auroc"],
    "plateau": ["scheduler=plateau"],
    "preset": ["experiment=seed_mobilenet_finetune"],  # variant=mobilenet_last3 and more
    "ddp": ["trainer=ddp", "trainer.accelerator=cpu"],
    "faces": ["face=crop", "synth=sbi+upsample"],
    "timm": ["model=timm", "model.pretrained=false"],
    "clip": ["model=clip", "model.pretrained=null"],
}

# Stand-ins for paths that only exist under the test's tmp dir.
A_FILE, A_DIR = "<an existing file>", "<an existing dir>"

#: (key, bad value) for the `video.*` keys of the commands that read clips (and train).
VIDEO_BAD_VALUES: list[tuple[str, Any]] = [
    ("video.frames", 0),
    ("video.frames", "all"),
    ("video.fps", 0),
    ("video.fps", "30"),
    ("video.aggregate", "vote"),
    ("video.topk", 0),
    ("video.faces", "first"),
    ("video.max_frames", 0),
    ("video.max_clip_frames", 0),
    ("video.max_seconds", -5),
    ("video.max_frame_pixels", 0),
    ("video.cache_dir", A_FILE),
    ("video.max_decoded_mb", 0),
]

#: (key, bad value, train variant whose config has the key); keys no shipped config sets
#: (`optimizer.betas`, `trainer.fast_dev_run`) are added to the default config.
TRAIN_BAD_VALUES: list[tuple[str, Any, str]] = [
    ("seed", -1, "default"),
    ("seed", True, "default"),
    ("seed", 2**32, "default"),
    ("seed", "42", "default"),
    ("optimized_metric", "", "default"),
    ("optimized_metric", 3, "default"),
    ("resume", "no/such/run", "default"),
    ("resume", A_FILE, "default"),
    ("resume", A_DIR, "default"),
    ("resume", 5, "default"),
    ("data.root", "no/such/dataset", "default"),
    ("data.root", A_FILE, "default"),
    ("data.root", 3, "default"),
    ("data.image_size", 15, "default"),
    ("data.image_size", True, "default"),
    ("data.image_size", "64", "default"),
    ("data.image_size", 64.0, "default"),
    ("data.batch_size", 0, "default"),
    ("data.batch_size", True, "default"),
    ("data.batch_size", 1.5, "default"),
    ("data.batch_size", None, "default"),
    ("data.num_workers", -1, "default"),
    ("data.num_workers", True, "default"),
    ("data.num_workers", 2.0, "default"),
    ("data.val_fraction", 0, "default"),
    ("data.val_fraction", 1.0, "default"),
    ("data.val_fraction", "0.1", "default"),
    ("data.val_fraction", True, "default"),
    ("data.val_fraction", math.nan, "default"),
    ("data.split_fractions", [0.8, 0.2], "default"),
    ("data.split_fractions", [0.5, 0.3, 0.3], "default"),
    ("data.split_fractions", [1.0, 0.0, 0.0], "default"),
    ("data.split_fractions", "0.8,0.1,0.1", "default"),
    ("data.split_lists", "no/such/lists", "default"),
    ("data.split_lists", A_FILE, "default"),
    ("data.class_aliases", {"fake": ["fake"], "other": ["x"]}, "default"),
    ("data.class_aliases", {"fake": ["images"], "real": ["Images"]}, "default"),
    ("data.class_aliases", {"fake": [], "real": ["real"]}, "default"),
    ("data.class_aliases", {"fake": "fake", "real": ["real"]}, "default"),
    ("data.source_depth", 0, "default"),
    ("data.source_depth", True, "default"),
    ("data.crop_scale", [0.5], "default"),
    ("data.crop_scale", [0.9, 0.8], "default"),
    ("data.crop_scale", [0, 1], "default"),
    ("data.crop_scale", [0.5, 1.1], "default"),
    ("data.crop_scale", ["0.5", 1.0], "default"),
    ("data.crop_scale", 0.8, "default"),
    ("data.eval_crop_fraction", 0, "default"),
    ("data.eval_crop_fraction", 1.5, "default"),
    ("data.eval_crop_fraction", "0.875", "default"),
    ("data.seed", -1, "default"),
    ("data.seed", "seed", "default"),
    ("data.demo_cache_dir", A_FILE, "default"),
    ("data.demo_cache_dir", 3, "default"),
    ("data.on_bad_image", "ignore", "default"),
    ("data.on_bad_image", True, "default"),
    ("data.on_bad_image", None, "default"),
    ("data.max_image_pixels", 0, "default"),
    ("compile", "yes", "default"),
    ("data.feature_cache", "yes", "default"),
    ("data.feature_cache_dir", A_FILE, "default"),
    ("data.feature_cache_dir", 3, "default"),
    ("data.feature_cache_views", 0, "default"),
    ("data.feature_cache_views", 1.5, "default"),
    ("data.feature_cache_dtype", "bfloat16", "default"),
    ("data.feature_cache_ram_mb", -1, "default"),
    ("data.feature_cache_ram_mb", "lots", "default"),
    ("data.max_image_pixels", True, "default"),
    ("data.max_image_pixels", 1.5e8, "default"),
    ("model.widths", [], "default"),
    ("model.widths", [32, 0], "default"),
    ("model.widths", [32, True], "default"),
    ("model.widths", [32.0], "default"),
    ("model.widths", 32, "default"),
    ("model.hidden_units", 0, "default"),
    ("model.hidden_units", True, "default"),
    ("model.dropout", 1, "default"),
    ("model.dropout", -0.1, "default"),
    ("model.dropout", "0.5", "default"),
    ("model.dropout", True, "mobilenet"),
    ("model.pooled_size", 0, "default"),
    ("model.channels_last", 1, "default"),
    ("model.channels_last", "true", "mobilenet"),
    ("model.pretrained", "yes", "mobilenet"),
    ("model.pretrained", 0, "mobilenet"),
    ("model.weights_path", "no/such/weights.pth", "mobilenet"),
    ("model.weights_path", A_DIR, "mobilenet"),
    ("model.name", "", "timm"),
    ("model.name", 50, "timm"),
    ("model.weights_path", "no/such/weights.safetensors", "timm"),
    ("trainer.sync_batchnorm", True, "timm"),
    ("model.arch", "", "clip"),
    ("model.arch", 32, "clip"),
    ("model.pretrained", 5, "clip"),
    ("model.weights_path", "no/such/open_clip.pt", "clip"),
    ("freeze.name", "partial", "default"),
    ("freeze.name", True, "default"),
    ("freeze.name", "last_n", "default"),  # freeze=none has no freeze.n
    ("freeze.n", -1, "sgd"),
    ("freeze.n", True, "sgd"),
    ("freeze.n", "3", "sgd"),
    ("optimizer.lr", 0, "default"),
    ("optimizer.lr", -1e-3, "default"),
    ("optimizer.lr", "1e-3", "default"),
    ("optimizer.lr", True, "default"),
    ("optimizer.lr", math.inf, "default"),
    ("optimizer.weight_decay", -0.1, "mobilenet"),
    ("optimizer.weight_decay", None, "default"),
    ("optimizer.momentum", 1.0, "sgd"),
    ("optimizer.momentum", -0.1, "sgd"),
    ("optimizer.momentum", "0.9", "sgd"),
    ("optimizer.nesterov", "true", "sgd"),
    ("optimizer.betas", [0.9], "default"),
    ("optimizer.betas", [0.9, 1.0], "mobilenet"),
    ("optimizer.betas", [0.9, True], "default"),
    ("optimizer.betas", "0.9,0.999", "default"),
    ("scheduler.T_max", 0, "mobilenet"),
    ("scheduler.T_max", 2.5, "mobilenet"),
    ("scheduler.eta_min", -1, "mobilenet"),
    ("scheduler.step_size", 0, "sgd"),
    ("scheduler.step_size", True, "sgd"),
    ("scheduler.gamma", 0, "sgd"),
    ("scheduler.gamma", 1.5, "sgd"),
    ("scheduler.gamma", "0.1", "sgd"),
    ("scheduler.factor", 1, "plateau"),
    ("scheduler.factor", 0, "plateau"),
    ("scheduler.patience", -1, "plateau"),
    ("scheduler.mode", "max", "plateau"),
    ("scheduler.mode", "MIN", "plateau"),
    ("early_stopping.monitor", "val/auc", "default"),
    ("early_stopping.monitor", "test/auroc", "sgd"),
    ("early_stopping.monitor", None, "default"),
    ("early_stopping.mode", "maximize", "default"),
    ("early_stopping.mode", "max", "default"),  # it monitors val/loss
    ("early_stopping.patience", -1, "default"),
    ("early_stopping.patience", 1.5, "default"),
    ("checkpoint.monitor", "val_auroc", "default"),
    ("checkpoint.monitor", "test/acc", "default"),
    ("checkpoint.mode", "min", "default"),  # it monitors val/auroc
    ("checkpoint.mode", "up", "default"),
    ("checkpoint.save_top_k", -2, "default"),
    ("checkpoint.save_top_k", True, "default"),
    ("checkpoint.filename", "", "default"),
    ("checkpoint.filename", None, "default"),
    ("checkpoint.auto_insert_metric_name", "no", "default"),
    ("trainer.max_epochs", 0, "default"),
    ("trainer.max_epochs", -1, "default"),
    ("trainer.max_epochs", True, "default"),
    ("trainer.max_epochs", 10.0, "default"),
    ("trainer.min_epochs", -1, "default"),
    ("trainer.min_epochs", 11, "default"),  # > max_epochs=10
    ("trainer.accelerator", "gpus", "default"),
    ("trainer.accelerator", None, "default"),
    ("trainer.devices", 0, "default"),
    ("trainer.devices", -2, "default"),
    ("trainer.devices", "two", "default"),
    ("trainer.devices", [], "default"),
    ("trainer.devices", [True], "default"),
    ("trainer.devices", 1.5, "default"),
    ("trainer.devices", True, "default"),
    ("trainer.precision", "16mixed", "default"),
    ("trainer.precision", 8, "default"),
    ("trainer.precision", True, "default"),
    ("trainer.precision", None, "default"),
    ("trainer.log_every_n_steps", 0, "default"),
    ("trainer.deterministic", "yes", "default"),
    ("trainer.deterministic", 1, "default"),
    ("trainer.benchmark", "no", "default"),
    ("trainer.fast_dev_run", -1, "default"),
    ("trainer.fast_dev_run", "true", "default"),
    ("logger.name", "", "default"),
    ("logger.name", 3, "default"),
    ("logger.default_hp_metric", "false", "default"),
    ("trainer.enable_model_summary", "no", "default"),
    ("progress.bar", "sometimes", "default"),
    ("progress.bar", 2, "default"),
    ("progress.every_s", -1, "default"),
    ("augment.name", 3, "default"),
    ("augment.crop", "yes", "default"),
    ("augment.flip_p", 1.5, "default"),
    ("augment.blur_p", -0.1, "default"),
    ("augment.jpeg_p", "half", "default"),
    ("augment.jitter_p", 2, "default"),
    ("augment.downscale_p", None, "default"),
    ("augment.noise_p", True, "default"),
    ("augment.blur_sigma", [0, 3], "default"),
    ("augment.blur_sigma", [3, 1], "default"),
    ("augment.jpeg_quality", [30, 101], "default"),
    ("augment.jpeg_quality", [30.5, 90], "default"),
    ("augment.brightness", -0.1, "default"),
    ("augment.contrast", "x", "default"),
    ("augment.saturation", None, "default"),
    ("augment.downscale_factor", [0, 1], "default"),
    ("augment.downscale_factor", [0.5, 1.5], "default"),
    ("augment.noise_sigma", [0.1], "default"),
    ("progress.every_s", "30s", "default"),
    ("trainer.strategy", "ddp_spawn", "default"),
    ("trainer.strategy", 2, "default"),
    ("trainer.num_nodes", 0, "default"),
    ("trainer.sync_batchnorm", "yes", "default"),
    ("trainer.sync_batchnorm", True, "ddp"),
    ("trainer.use_distributed_sampler", True, "default"),
    ("face.name", "detect", "default"),
    ("face.name", None, "faces"),
    ("face.detector", "retinaface", "faces"),
    ("face.detector", 3, "faces"),
    ("face.model_path", "no/such/model.onnx", "faces"),
    ("face.score_threshold", 1.5, "faces"),
    ("face.detect_size", 32, "faces"),
    ("face.min_size", 0, "faces"),
    ("face.margin", 0.9, "faces"),
    ("face.square", "yes", "faces"),
    ("face.align", 1, "faces"),
    ("face.crop_size", 16, "faces"),
    ("face.on_missing", "drop", "faces"),
    ("face.select", "first", "faces"),
    ("face.verdict", "min", "faces"),
    ("face.cache", "true", "faces"),
    ("face.cache_dir", A_FILE, "faces"),
    ("data.sampling", "weighted", "default"),
    ("data.select_on", "no/such/dataset", "default"),
    ("checkpoint.monitor", "select/auroc", "default"),
    ("data.select_on", A_FILE, "default"),
    ("data.test_roots", [], "default"),
    ("data.test_roots", ["no/such/dataset"], "default"),
    ("synth.name", "gan", "default"),
    ("synth.name", "gan", "faces"),
    ("synth.ratio", 1.5, "faces"),
    ("synth.ratio", "half", "faces"),
    ("synth.only", "yes", "faces"),
    *((key, value, "default") for key, value in VIDEO_BAD_VALUES),
]

#: (key, bad value) of `face.*` for every command that scores with a trained detector.
SCORING_FACE_BAD_VALUES: list[tuple[str, Any]] = [
    ("face.name", "detect"),
    ("face.detector", "retinaface"),
    ("face.model_path", "no/such/model.onnx"),
    ("face.score_threshold", -1),
    ("face.detect_size", 10),
    ("face.min_size", 0),
    ("face.margin", 5),
    ("face.square", "no"),
    ("face.align", "no"),
    ("face.crop_size", 4096),
    ("face.on_missing", "drop"),
    ("face.select", "first"),
    ("face.verdict", "min"),
    ("face.cache", 1),
    ("face.cache_dir", A_FILE),
]

#: (key, bad value) for `deepfake-evaluate`, on its config with an existing `ckpt_path`.
EVALUATE_BAD_VALUES: list[tuple[str, Any]] = [
    ("calibration", "platt"),
    ("perturb.name", 3),
    ("perturb.name", "fog"),
    ("perturb.severity", "strong"),
    ("perturb.severity", True),
    ("ckpt_path", "no/such/run"),
    ("ckpt_path", ""),
    ("ckpt_path", None),
    ("ckpt_path", 3),
    ("threshold", 1.5),
    ("threshold", -0.1),
    ("threshold", "0.5"),
    ("threshold", "VAL"),
    ("threshold", True),
    ("threshold", None),
    ("threshold", "val_fpr"),
    ("threshold", "val_fpr:2"),
    ("threshold", "val_tpr:0"),
    ("threshold", "val_fnr:0.1"),
    ("data.label", "both"),
    ("data.label", 1),
    ("data.split", "dev"),
    ("data.split", 1),
    ("data.split", None),
    ("data.test_roots", []),
    ("data.test_roots", "no/such/dataset"),
    ("data.test_roots", ["no/such/dataset"]),
    ("data.test_roots", [A_FILE]),
    ("data.root", "no/such/dataset"),
    ("data.root", A_FILE),
    ("data.image_size", 8),
    ("data.image_size", "224"),
    ("data.source_depth", 0),
    ("data.class_aliases", {"fake": ["x"], "real": ["X"]}),
    ("data.split_lists", "no/such/lists"),
    ("data.split_fractions", [1.0]),
    ("data.batch_size", 0),
    ("data.num_workers", -1),
    ("data.on_bad_image", "warn"),
    ("data.max_image_pixels", 0),
    ("trainer.accelerator", "npu"),
    ("trainer.devices", 0),
    ("trainer.precision", "half"),
    *SCORING_FACE_BAD_VALUES,
    ("video.frames", 0),
    ("video.fps", -1),
    ("video.aggregate", "vote"),
    ("video.topk", 0),
]

#: (key, bad value) for `deepfake-predict`.
PREDICT_BAD_VALUES: list[tuple[str, Any]] = [
    ("calibration", True),
    ("backend", "tensorrt"),
    ("ckpt_path", None),
    ("ckpt_path", "no/such/run"),
    ("input", None),
    ("input", ""),
    ("input", "no/such/images"),
    ("threshold", 2),
    ("threshold", "best"),
    ("operating_point", 0.3),
    ("operating_point", "val_tpr:x"),
    ("operating_point", 0.5),
    ("operating_point", "val_fpr:1.5"),
    ("operating_point", "best"),
    ("data.image_size", 8),
    ("data.batch_size", 0),
    ("data.num_workers", -1),
    ("data.on_bad_image", "ignore"),
    ("data.max_image_pixels", 0),
    ("trainer.accelerator", "npu"),
    ("trainer.devices", 0),
    ("trainer.precision", "half"),
    ("warn_small_face", 1.5),
    ("warn_small_face", "small"),
    *SCORING_FACE_BAD_VALUES,
    *VIDEO_BAD_VALUES,
]

#: (key, bad value) for `deepfake-export`.
EXPORT_BAD_VALUES: list[tuple[str, Any]] = [
    ("ckpt_path", None),
    ("ckpt_path", "no/such/run"),
    ("format", "tflite"),
    ("format", "torchscript"),
    ("threshold", 1.5),
    ("calibration", "platt"),
    ("parity.images", 0),
    ("parity.images", 1000),
    ("parity.split", "dev"),
    ("quantize", "int4"),
    ("quantize", True),
    ("quantization.method", "qat"),
    ("quantization.calibration_images", 0),
    ("quantization.calibrate", "kl"),
    ("quantization.max_auroc_drop", -0.1),
    ("quantization.max_acc_drop", 2),
    ("data.num_workers", -1),
    ("data.on_bad_image", "ignore"),
    ("data.max_image_pixels", 0),
    ("trainer.accelerator", "npu"),
    ("trainer.devices", 0),
    ("trainer.precision", "half"),
]

#: (key, bad value) for `deepfake-serve`.
SERVE_BAD_VALUES: list[tuple[str, Any]] = [
    ("ckpt_path", None),
    ("ckpt_path", "no/such/model.onnx"),
    ("backend", "tensorrt"),
    ("threshold", "best"),
    ("operating_point", 0.3),
    ("operating_point", "val_tpr:x"),
    ("calibration", "platt"),
    ("host", ""),
    ("host", 127),
    ("port", 0),
    ("port", 70000),
    ("port", "8000"),
    ("api_key", ""),
    ("api_key", 1234),
    ("cors_origins", "http://a"),
    ("cors_origins", [1]),
    ("warn_small_face", -0.1),
    *SCORING_FACE_BAD_VALUES,
    ("limits.max_upload_mb", 0),
    ("limits.max_files", 0),
    ("limits.max_concurrent", 0),
    ("limits.request_timeout_s", -1),
    ("limits.max_batch", 0),
    ("limits.max_video_mb", 0),
    ("limits.max_concurrent_videos", 0),
    ("limits.video_timeout_s", 0),
    *VIDEO_BAD_VALUES,
    ("data.num_workers", -1),
    ("data.on_bad_image", "ignore"),
    ("data.max_image_pixels", 0),
    ("trainer.accelerator", "npu"),
    ("trainer.devices", 0),
    ("trainer.precision", "half"),
    ("cpu.model_threads", 0),
    ("cpu.model_threads", "all"),
    ("cpu.decode_threads", 0),
    ("cpu.spinning", "yes"),
]

#: (key, bad value) for `deepfake-audit`.
AUDIT_BAD_VALUES: list[tuple[str, Any]] = [
    ("data.root", None),
    ("data.root", ""),
    ("data.root", "no/such/dataset"),
    ("data.root", A_FILE),
    ("data.max_image_pixels", 0),
    ("data.max_image_pixels", None),
    ("seed", -1),
    ("data.split_fractions", [0.5, 0.5]),
    ("data.class_aliases", {"real": ["real"], "extra": ["x"]}),
    ("audit.fail_on_leakage", "yes"),
    ("audit.fail_on_leakage", 1),
    ("audit.fail_on", "duplicates"),
    ("audit.fail_on", True),
    ("audit.near_duplicates", None),
    ("audit.hash_size", 3),
    ("audit.hash_size", True),
    ("audit.max_distance", -1),
    ("audit.max_distance", 1.5),
    ("audit.num_workers", -1),
    ("audit.num_workers", "4"),
    ("audit.shortcuts", "yes"),
    ("audit.shortcuts", None),
    ("audit.shortcut_warn_auroc", 0.5),
    ("audit.shortcut_warn_auroc", 1.5),
    ("audit.shortcut_warn_auroc", "0.8"),
    ("audit.shortcut_warn_auroc", True),
]


def _params(table: list[tuple]) -> list:
    return [pytest.param(*row, id=f"{row[0]}={row[1]!r}") for row in table]


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`model.weights_path` interpolates this variable; a developer's value must not leak in."""
    monkeypatch.delenv("MOBILENET_V2_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def train_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DictConfig]:
    """Composed once for the module: composing is the slow part, and tests only copy them.

    `trainer.precision` is pinned because resolving `${dd.auto_precision:}` imports torch
    (seconds); `test_automatic_precisions_pass` covers the two values it can give.
    """
    output_dir = tmp_path_factory.mktemp("run")
    return {
        name: compose_train([*overrides, "trainer.precision=32-true"], output_dir)
        for name, overrides in TRAIN_VARIANTS.items()
    }


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("paths")
    (root / "file.txt").write_text("not a folder")
    (root / "dir").mkdir()
    return {A_FILE: str(root / "file.txt"), A_DIR: str(root / "dir")}


@pytest.fixture(scope="module")
def evaluate_config(tmp_path_factory: pytest.TempPathFactory, paths: dict) -> DictConfig:
    output_dir = tmp_path_factory.mktemp("evaluate")
    return compose_config("evaluate", [f"ckpt_path={paths[A_FILE]}"], output_dir)


@pytest.fixture(scope="module")
def predict_config(tmp_path_factory: pytest.TempPathFactory, paths: dict) -> DictConfig:
    output_dir = tmp_path_factory.mktemp("predict")
    overrides = [f"ckpt_path={paths[A_FILE]}", f"input={paths[A_DIR]}"]
    return compose_config("predict", overrides, output_dir)


@pytest.fixture
def audit_config(tmp_path: Path) -> DictConfig:
    """Stands in for conf/audit.yaml, which lands separately."""
    return OmegaConf.create(
        {
            "data": {"root": str(tmp_path), "max_image_pixels": 89478485},
            "audit": {
                "fail_on_leakage": True,
                "near_duplicates": True,
                "hash_size": 8,
                "max_distance": 4,
                "num_workers": None,
            },
        }
    )


def _with(cfg: DictConfig, key: str, value: Any, paths: dict[str, str] | None = None) -> DictConfig:
    cfg = copy.deepcopy(cfg)
    if isinstance(value, str) and paths and value in paths:
        value = paths[value]
    OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def _assert_names_first(error: pytest.ExceptionInfo[ConfigError], key: str) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith((f"{key}=", f"{key} is required: ")), message
    return message


@pytest.mark.parametrize("variant", TRAIN_VARIANTS)
def test_shipped_train_configs_pass(train_configs: dict[str, DictConfig], variant: str) -> None:
    validate_train_config(train_configs[variant])


@pytest.mark.parametrize(("key", "value", "variant"), _params(TRAIN_BAD_VALUES))
def test_bad_train_value_is_one_line_naming_the_key(
    train_configs: dict[str, DictConfig], paths: dict[str, str], key: str, value, variant: str
) -> None:
    cfg = _with(train_configs[variant], key, value, paths)
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    _assert_names_first(error, key)


@pytest.mark.parametrize("precision", ["16-mixed", "32-true"])
def test_automatic_precisions_pass(train_configs: dict[str, DictConfig], precision: str) -> None:
    validate_train_config(_with(train_configs["default"], "trainer.precision", precision))


def test_evaluate_config_with_a_checkpoint_passes(
    evaluate_config: DictConfig, paths: dict[str, str]
) -> None:
    validate_evaluate_config(evaluate_config)
    validate_evaluate_config(_with(evaluate_config, "ckpt_path", paths[A_DIR]))
    for ok in ("val", 0, 1, 0.3, "val_eer", "val_fpr:0.01", "val_tpr:0.95", "val_fpr:1e-3"):
        validate_evaluate_config(_with(evaluate_config, "threshold", ok))
    for split in ("VALID", "Validation", "train", "Test"):
        validate_evaluate_config(_with(evaluate_config, "data.split", split))
    validate_evaluate_config(_with(evaluate_config, "trainer.precision", "bf16-mixed"))
    # The training run's image-reading settings apply unless given.
    assert evaluate_config.data.on_bad_image is None
    validate_evaluate_config(_with(evaluate_config, "data.on_bad_image", "error"))
    validate_evaluate_config(_with(evaluate_config, "data.max_image_pixels", 10**6))


@pytest.mark.parametrize(("key", "value"), _params(EVALUATE_BAD_VALUES))
def test_bad_evaluate_value_is_one_line_naming_the_key(
    evaluate_config: DictConfig, paths: dict[str, str], key: str, value
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_evaluate_config(_with(evaluate_config, key, value, paths))
    _assert_names_first(error, key)


def test_evaluate_without_ckpt_path_says_it_is_required(tmp_path: Path) -> None:
    cfg = compose_config("evaluate", [], tmp_path)
    with pytest.raises(ConfigError, match=r"^ckpt_path is required: .*ckpt_path=outputs/train"):
        validate_evaluate_config(cfg)


def test_predict_config_passes(predict_config: DictConfig, paths: dict[str, str]) -> None:
    validate_predict_config(predict_config)
    validate_predict_config(_with(predict_config, "input", paths[A_FILE]))  # one image


@pytest.mark.parametrize(("key", "value"), _params(PREDICT_BAD_VALUES))
def test_bad_predict_value_is_one_line_naming_the_key(
    predict_config: DictConfig, paths: dict[str, str], key: str, value
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_predict_config(_with(predict_config, key, value, paths))
    _assert_names_first(error, key)


#: Commands whose config is checked with a `ckpt_path` that exists: (validator, bad values).
CHECKPOINT_COMMANDS = {
    "serve": (validate_serve_config, SERVE_BAD_VALUES),
    "export": (validate_export_config, EXPORT_BAD_VALUES),
}


@pytest.fixture(scope="module")
def command_configs(tmp_path_factory: pytest.TempPathFactory, paths: dict) -> dict:
    return {
        name: compose_config(name, [f"ckpt_path={paths[A_FILE]}"], tmp_path_factory.mktemp(name))
        for name in CHECKPOINT_COMMANDS
    }


def test_serve_config_passes(command_configs: dict[str, DictConfig]) -> None:
    serve_config = command_configs["serve"]
    validate_serve_config(serve_config)
    validate_serve_config(_with(serve_config, "cors_origins", ["http://localhost:3000"]))
    validate_serve_config(_with(serve_config, "backend", "onnx"))


def test_export_config_passes(command_configs: dict[str, DictConfig]) -> None:
    export_config = command_configs["export"]
    validate_export_config(export_config)
    validate_export_config(_with(export_config, "format", "torch_export"))
    validate_export_config(_with(export_config, "parity.split", "Validation"))


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        pytest.param(command, *row, id=f"{command}:{row[0]}={row[1]!r}")
        for command, (_, table) in CHECKPOINT_COMMANDS.items()
        for row in table
    ],
)
def test_bad_serve_or_export_value_is_one_line_naming_the_key(
    command_configs: dict[str, DictConfig], paths: dict[str, str], command: str, key: str, value
) -> None:
    validate = CHECKPOINT_COMMANDS[command][0]
    with pytest.raises(ConfigError) as error:
        validate(_with(command_configs[command], key, value, paths))
    _assert_names_first(error, key)


def test_audit_config_passes(audit_config: DictConfig) -> None:
    validate_audit_config(audit_config)


@pytest.mark.parametrize(("key", "value"), _params(AUDIT_BAD_VALUES))
def test_bad_audit_value_is_one_line_naming_the_key(
    audit_config: DictConfig, paths: dict[str, str], key: str, value
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_audit_config(_with(audit_config, key, value, paths))
    _assert_names_first(error, key)


@pytest.mark.parametrize(
    ("rules", "table"),
    [
        pytest.param(TRAIN_RULES, TRAIN_BAD_VALUES, id="train"),
        pytest.param(EVALUATE_RULES, EVALUATE_BAD_VALUES, id="evaluate"),
        pytest.param(PREDICT_RULES, PREDICT_BAD_VALUES, id="predict"),
        pytest.param(EXPORT_RULES, EXPORT_BAD_VALUES, id="export"),
        pytest.param(SERVE_RULES, SERVE_BAD_VALUES, id="serve"),
        pytest.param(AUDIT_RULES, AUDIT_BAD_VALUES, id="audit"),
    ],
)
def test_every_rule_has_a_bad_value_test(rules: dict, table: list[tuple]) -> None:
    tested = {row[0] for row in table}
    assert set(rules) - tested == set(), "rules without a bad-value test"
    assert tested - set(rules) == set(), "bad-value tests of keys without a rule"


def test_message_format(train_configs: dict[str, DictConfig]) -> None:
    with pytest.raises(ConfigError) as error:
        validate_train_config(_with(train_configs["default"], "data.batch_size", 0))
    assert str(error.value) == "data.batch_size=0: must be an integer >= 1"
    with pytest.raises(ConfigError) as error:
        validate_train_config(_with(train_configs["default"], "data.num_workers", "4"))
    assert str(error.value) == "data.num_workers=4: must be null or an integer >= 0"
    assert show(None) == "null" and show(True) == "true" and show("") == "''"
    assert show([0.8, 1.0]) == "[0.8, 1.0]" and show("a\nb") == "'a\\nb'"
    assert len(show("x" * 500)) == 80
    long_path = "/".join(["folder"] * 30) + "/file.ckpt"
    assert show(long_path) == long_path  # paths whole: the end names the file


def test_ints_pass_where_numbers_are_expected(train_configs: dict[str, DictConfig]) -> None:
    cfg = train_configs["sgd"]
    for key, value in [
        ("optimizer.lr", 1),
        ("optimizer.weight_decay", 0),
        ("optimizer.momentum", 0),
        ("model.dropout", 0),
        ("data.eval_crop_fraction", 1),
        ("data.crop_scale", [1, 1]),
    ]:
        cfg = _with(cfg, key, value)
    cfg = _with(cfg, "optimizer.nesterov", False)  # nesterov needs momentum > 0
    validate_train_config(cfg)


def test_blank_and_null_paths_mean_unset(train_configs: dict[str, DictConfig]) -> None:
    cfg = _with(train_configs["mobilenet"], "data.root", "")
    cfg = _with(cfg, "model.weights_path", "")
    cfg = _with(cfg, "data.demo_cache_dir", "no/such/cache/yet")  # created on first use
    validate_train_config(_with(cfg, "resume", None))
    validate_train_config(_with(cfg, "resume", ""))


def test_a_run_without_a_sweep_objective_passes(train_configs: dict[str, DictConfig]) -> None:
    validate_train_config(_with(train_configs["default"], "optimized_metric", None))


def test_existing_paths_pass(
    train_configs: dict[str, DictConfig], paths: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    cfg = _with(train_configs["mobilenet"], "resume", str(run))
    cfg = _with(cfg, "data.root", paths[A_DIR])
    cfg = _with(cfg, "data.demo_cache_dir", paths[A_DIR])
    validate_train_config(_with(cfg, "model.weights_path", paths[A_FILE]))


@pytest.mark.parametrize(
    ("key", "value", "variant", "reason"),
    [
        ("resume", "no/such/run", "default", "resume=no/such/run: no such run directory"),
        ("resume", A_DIR, "default", "not a training run directory (no .hydra/config.yaml)"),
        ("data.root", A_FILE, "default", ": not a directory"),
        ("model.weights_path", A_DIR, "mobilenet", ": not a file"),
        ("trainer.min_epochs", 11, "default", "must be <= trainer.max_epochs (10)"),
        ("freeze.name", "last_n", "default", "needs an integer freeze.n"),
        ("early_stopping.mode", "max", "default", "must be min for early_stopping.monitor"),
        ("checkpoint.mode", "min", "default", "must be max for checkpoint.monitor=val/auroc"),
        ("optimizer.momentum", 0, "sgd", "optimizer.nesterov=true: needs"),
        ("trainer.precision", "fp16", "default", "one of: 32-true, 16-mixed, bf16-mixed"),
    ],
)
def test_messages_say_what_is_wrong(
    train_configs: dict[str, DictConfig], paths: dict, key: str, value, variant: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_train_config(_with(train_configs[variant], key, value, paths))
    assert reason in str(error.value)


def test_the_key_the_user_set_is_named_before_keys_copying_it(
    train_configs: dict[str, DictConfig],
) -> None:
    cfg = _with(train_configs["mobilenet"], "trainer.max_epochs", 0)
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    message = _assert_names_first(error, "trainer.max_epochs")
    assert message.endswith("(also invalid: trainer.min_epochs, scheduler.T_max)")
    assert [p.key for p in config_problems(cfg, TRAIN_RULES)][-1] == "scheduler.T_max"


def test_an_interpolation_that_fails_names_its_key(train_configs: dict[str, DictConfig]) -> None:
    cfg = _with(train_configs["default"], "data.batch_size", "${no.such.key}")
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    message = _assert_names_first(error, "data.batch_size")
    assert message.startswith("data.batch_size=${no.such.key}: cannot be resolved (")


def test_a_missing_value_is_required(train_configs: dict[str, DictConfig]) -> None:
    with pytest.raises(ConfigError, match=r"^data.batch_size is required: must be an integer"):
        validate_train_config(_with(train_configs["default"], "data.batch_size", "???"))


def test_hydra_only_interpolations_are_never_resolved(
    train_configs: dict[str, DictConfig],
) -> None:
    """Outside a Hydra run `${hydra:...}` cannot resolve; validating must not try."""
    cfg = _with(train_configs["default"], "paths.output_dir", "${hydra:runtime.output_dir}")
    validate_train_config(cfg)


def test_keys_of_unchosen_groups_are_not_checked(train_configs: dict[str, DictConfig]) -> None:
    cfg = train_configs["default"]
    assert cfg.scheduler is None and "pretrained" not in cfg.model
    keys = {p.key for p in config_problems(_with(cfg, "early_stopping", None), TRAIN_RULES)}
    assert keys == set()
