"""Where the Hydra configs live, the resolvers they use, and checks Hydra cannot do for us."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from deepfake_detection.console import is_first_process, process_rank
from deepfake_detection.errors import ConfigError

_PACKAGED_CONF = Path(__file__).resolve().parent / "conf"
_SOURCE_CONF = Path(__file__).resolve().parents[2] / "conf"

#: Image size used for the built-in demo set, which is generated at this resolution.
DEMO_IMAGE_SIZE = 64
#: Image size used for user datasets when `data.image_size` is not given.
DEFAULT_IMAGE_SIZE = 224


def config_dir() -> Path:
    """The `conf/` folder: inside the wheel when installed, at the repo root when editable."""
    for candidate in (_PACKAGED_CONF, _SOURCE_CONF):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"cannot find the config folder (looked in {_PACKAGED_CONF})")


def _default_image_size(root: str | None) -> int:
    # The demo set is small and low-resolution so `python -m train` stays a 3-minute demo
    # on a laptop CPU; real datasets get the ImageNet resolution the backbones expect.
    return DEMO_IMAGE_SIZE if root in (None, "") else DEFAULT_IMAGE_SIZE


def auto_precision() -> str:
    # Mixed precision pays off on CUDA only; bf16 autocast is many times slower on CPUs.
    import torch

    return "16-mixed" if torch.cuda.is_available() else "32-true"


def metric_mode(monitor: str) -> str:
    # Losses and error rates improve downwards, everything else we log improves upwards.
    name = monitor.rsplit("/", 1)[-1]
    return "min" if name in {"loss", "eer", "ece"} or name.endswith("_loss") else "max"


def _run_dir(resume: str | None, new_run_dir: str) -> str:
    # `resume=<run dir>` continues in that folder instead of starting a new one.
    return resume if resume else new_run_dir


def _hydra_subdir(resume: str | None) -> str | None:
    # A resumed run keeps the config it started with; Hydra must not overwrite it. The other
    # processes of a distributed run (SLURM tasks run the whole job) leave it to the first.
    return None if resume or not is_first_process() else ".hydra"


def _log_name(job_name: str) -> str:
    # Each process of a distributed run logs to its own file. Lightning names the processes
    # it starts itself (`train_ddp_process_1`); a SLURM task gets its rank added here.
    if is_first_process() or "_process_" in job_name:
        return job_name
    return f"{job_name}_process_{process_rank()}"


def _tasks_per_node(devices: Any) -> int:
    # Lightning on SLURM needs one task per device; `auto` or -1 can only mean one here.
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    if isinstance(devices, (list, ListConfig)):
        return max(1, len(devices))
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return 1


def _gpus_per_node(devices: Any, accelerator: str) -> int | None:
    # CPU processes reserve no GPU; otherwise one GPU per task.
    return None if str(accelerator) == "cpu" else _tasks_per_node(devices)


def register_resolvers() -> None:
    """Register the `dd.*` resolvers used in conf/ (idempotent)."""
    resolvers = {
        "dd.default_image_size": _default_image_size,
        "dd.auto_precision": auto_precision,
        "dd.metric_mode": metric_mode,
        "dd.run_dir": _run_dir,
        "dd.hydra_subdir": _hydra_subdir,
        "dd.log_name": _log_name,
        "dd.tasks_per_node": _tasks_per_node,
        "dd.gpus_per_node": _gpus_per_node,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _check_installed(module: str, extra: str, override: Any) -> None:
    """An option that needs an optional extra names the extra, instead of Hydra's traceback."""
    from importlib.util import find_spec

    try:
        found = find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ConfigError(
            f"{override.input_line}: needs an optional extra: "
            f'pip install "deepfake-detection[{extra}]"'
        )


#: Keys the SLURM launcher sizes every job of a sweep from, once for the whole sweep.
LAUNCHER_SIZE_KEYS = ("trainer", "trainer.devices", "trainer.num_nodes", "trainer.accelerator")


def _check_launcher_sizes(parsed: list[Any]) -> None:
    """`hydra/launcher=submitit_slurm` asks SLURM for the same tasks and GPUs for every job,
    so a sweep over what decides them would give some jobs the wrong number."""
    slurm = any(
        o.key_or_group == "hydra/launcher" and str(o.value()) == "submitit_slurm" for o in parsed
    )
    swept = [o.key_or_group for o in parsed if o.is_sweep_override()]
    if slurm and (sizes := [key for key in swept if key in LAUNCHER_SIZE_KEYS]):
        raise ConfigError(
            f"{sizes[0]}: hydra/launcher=submitit_slurm sizes every job of a sweep alike "
            "(tasks and GPUs per node); sweep it in separate sweeps, one value each"
        )


def check_group_choices(overrides: list[str], conf: Path | None = None) -> None:
    """Reject `group=option` overrides that name no config file, listing the valid options.

    Hydra reports these too, but over several lines; we want one line before anything loads.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    conf = conf or config_dir()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # malformed overrides: Hydra's own message explains them better
    _check_launcher_sizes(parsed)
    for override in parsed:
        group = override.key_or_group
        group_dir = conf / group
        if override.is_delete() or override.package or not group_dir.is_dir():
            continue
        if group == "hydra/launcher" and str(override.value()).startswith("submitit"):
            _check_installed("hydra_plugins.hydra_submitit_launcher", "slurm", override)
        if group.startswith("hydra/"):
            continue  # Hydra and its plugins add options of their own (hydra/launcher=basic)
        value = override.value()
        if isinstance(value, ChoiceSweep):
            values = value.list
        elif override.is_sweep_override():
            continue  # glob() and range() sweeps: Hydra expands and checks them
        else:
            values = [value]
        choices = sorted(p.stem for p in group_dir.glob("*.yaml"))
        for value in values:
            if value is not None and str(value) not in choices:
                raise ConfigError(
                    f"{group}={value}: unknown {group} option; choose one of: {', '.join(choices)}"
                )
