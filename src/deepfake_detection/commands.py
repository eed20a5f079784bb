"""Every command of the project, in one table, and the entry points built from it.

Each row (`Command`) names a command, its Hydra config (`conf/<config>.yaml`), the rules its
keys are checked against and the task it runs. From each row come:

- the console script `deepfake-<name>` (`pyproject.toml` points at `<NAME>.cli`);
- `python -m deepfake_detection.<name>`: the package's module finder (`__init__.py`) asks
  `command_module_spec` for names no file provides, so no file per command is needed;
- `python -m train` (`src/train.py`) for the training command;
- `--help`: what the command does, an example, and the groups and keys of its own config.

A command runs as: check `group=option` overrides (one line, before Hydra starts), compose
the config, check every key once against the command's rules, then run the task. Tasks are
imported only then: torch and Lightning take seconds to import, and a mistyped key should
not wait for them (training's rules are the exception: its `model.*` keys are checked against
the chosen architecture's module).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.auditing.settings import AUDIT_RULES
from deepfake_detection.cli import check_groups_or_fail, command_line_overrides, fail, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.console import setup_console
from deepfake_detection.errors import UserInputError
from deepfake_detection.evaluation.settings import EVALUATE_RULES, ROBUSTNESS_RULES
from deepfake_detection.exporting.settings import EXPORT_RULES
from deepfake_detection.prediction.settings import PREDICT_RULES
from deepfake_detection.rules import Rule, validate
from deepfake_detection.serving.settings import SERVE_RULES
from deepfake_detection.startup import imports_done, prepare_process

HELP_FLAGS = ("-h", "--help")


@dataclass(frozen=True)
class Command:
    """One command: its name, what it does, and how it runs."""

    #: `deepfake-<name>`, `python -m deepfake_detection.<name>`.
    name: str
    #: One line: what the command does.
    summary: str
    #: A typical command line.
    example: str
    #: The task: the composed, checked config in, the command's result out. For a command
    #: without a Hydra config, its command-line arguments in, an exit status out.
    task: Callable[[Any], Any]
    #: Its Hydra config, `conf/<config>.yaml`; None for a command that parses its own
    #: arguments (`compare`).
    config: str | None = None
    #: The rules its config's keys are checked against, declared by the settings beside the
    #: code that reads them (`<package>/settings.py`); or a function of the config, when they
    #: depend on it (`model.*`: the chosen architecture's).
    rules: Mapping[str, Rule] | Callable[[DictConfig], Mapping[str, Rule]] | None = None
    #: Rewrites the command line before Hydra sees it (a resumed run's overrides).
    prepare: Callable[[list[str]], list[str]] | None = None

    @property
    def script(self) -> str:
        return f"deepfake-{self.name}"

    def run(self, cfg: DictConfig) -> Any:
        """Check every key of `cfg` once, quiet the console, then run the task (which
        trusts the keys)."""
        rules = self.rules(cfg) if callable(self.rules) else self.rules
        if rules is not None:
            validate(cfg, rules)
        setup_console()
        imports_done()
        return self.task(cfg)

    def cli(self) -> None:
        """The command line: `deepfake-<name> [key=value ...]`."""
        prepare_process()
        try:
            self._cli()
        finally:
            imports_done()  # when the command ended before its task ran

    def _cli(self) -> None:
        argv = sys.argv[1:]
        if self.config is None:
            imports_done()
            sys.exit(self.task(argv))
        if any(flag in argv for flag in HELP_FLAGS):
            _print_help(self.help_text(command_line_overrides(argv)))
            return
        check_groups_or_fail(argv)
        if self.prepare is not None:
            try:
                sys.argv[1:] = self.prepare(argv)
            except UserInputError as err:
                fail(err)
        self._hydra_main()()

    def _hydra_main(self) -> Callable[[], Any]:
        import hydra

        register_resolvers()

        def task(cfg: DictConfig) -> Any:
            return run_task(self.run, cfg)

        # Hydra names the job, and so the run's log file (`<name>.log`), after the module
        # of the task function: the command's own name.
        task.__module__ = f"{__package__}.{self.name}"
        task.__name__ = task.__qualname__ = self.name
        return hydra.main(
            version_base="1.3", config_path=str(config_dir()), config_name=self.config
        )(task)

    def help_text(self, overrides: Sequence[str] = ()) -> str:
        """What the command does, an example, its config groups and its keys (as `overrides`
        set them: `deepfake-train model=mobilenet_v2 --help` shows MobileNetV2's keys)."""
        groups, keys = _groups_and_keys(self.config or "", overrides)
        lines = [f"{self.script}: {self.summary}", "", "Example:", f"  {self.example}", ""]
        if groups:
            lines.append("Config groups (group=option; the chosen one first):")
            lines += [f"  {group}: {', '.join(options)}" for group, options in groups.items()]
            lines.append("")
        lines += ["Keys (key=value), with their defaults:", "", keys.rstrip(), ""]
        lines.append(
            f"{self.name} is powered by Hydra: --cfg job prints the composed config, "
            "--hydra-help Hydra's own flags."
        )
        return "\n".join(lines)


def _print_help(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `--help | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _groups_and_keys(
    config: str, overrides: Sequence[str] = ()
) -> tuple[dict[str, list[str]], str]:
    """The config's groups ({group: [chosen, other options]}) and its keys as YAML, with the
    overrides given (or, when they do not compose, without them)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        try:
            cfg = compose(config, overrides=list(overrides), return_hydra_config=True)
        except (HydraException, OmegaConfBaseException):
            cfg = compose(config, return_hydra_config=True)
    groups: dict[str, list[str]] = {}
    for group, chosen in reversed(cfg.hydra.runtime.choices.items()):
        if group.startswith("hydra"):
            continue
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        first = [str(chosen)] if chosen is not None else ["null"]
        groups[group] = first + [o for o in options if o != chosen]
    shown = OmegaConf.to_container(cfg, resolve=False)
    for internal in ("hydra", "paths"):  # Hydra's own settings; where outputs go
        shown.pop(internal, None)
    return groups, OmegaConf.to_yaml(shown)


# --- tasks: imported when the command runs, after its config has been checked ------------------


def _train(cfg: DictConfig) -> Any:
    from deepfake_detection.training.train import train

    return train(cfg)


def _evaluate(cfg: DictConfig) -> Any:
    from deepfake_detection.evaluation.evaluate import evaluate

    return evaluate(cfg)


def _robustness(cfg: DictConfig) -> Any:
    from deepfake_detection.evaluation.robustness import robustness

    return robustness(cfg)


def _predict(cfg: DictConfig) -> Any:
    from deepfake_detection.prediction.predict import predict

    return predict(cfg)


def _export(cfg: DictConfig) -> Any:
    from deepfake_detection.exporting.export import export

    return export(cfg)


def _serve(cfg: DictConfig) -> Any:
    from deepfake_detection.serving.server import serve

    return serve(cfg)


def _audit(cfg: DictConfig) -> Any:
    from deepfake_detection.auditing.dataset_audit import audit_command

    return audit_command(cfg)


def _compare(argv: Sequence[str]) -> int:
    from deepfake_detection.comparison.compare import main

    return main(argv)


def _train_rules(cfg: DictConfig) -> Mapping[str, Rule]:
    # Imported when a training run starts: the `model.*` rules come from the architecture
    # modules (torch); the other commands' rules are torch-free, so their mistakes are
    # answered in a second.
    from deepfake_detection.training.settings import train_rules

    return train_rules(cfg)


def _resume_command_line(argv: list[str]) -> list[str]:
    from deepfake_detection.training.resume import resume_command_line

    return resume_command_line(argv)


# --- the table ----------------------------------------------------------------------------------

TRAIN = Command(
    name="train",
    summary="train a detector, then test its best checkpoint (chosen on validation).",
    example="python -m train model=mobilenet_v2 freeze=last_n freeze.n=3 data.root=<dataset>",
    task=_train,
    config="train",
    rules=_train_rules,
    prepare=_resume_command_line,
)
EVALUATE = Command(
    name="evaluate",
    summary="test a trained detector on any Fake/Real dataset: metrics, scores, figures.",
    example="deepfake-evaluate ckpt_path=outputs/train/<run> data.root=<dataset> threshold=val",
    task=_evaluate,
    config="evaluate",
    rules=EVALUATE_RULES,
)
ROBUSTNESS = Command(
    name="robustness",
    summary="score a trained detector clean and under JPEG, blur, downscaling and noise.",
    example="deepfake-robustness ckpt_path=outputs/train/<run> threshold=val",
    task=_robustness,
    config="robustness",
    rules=ROBUSTNESS_RULES,
)
PREDICT = Command(
    name="predict",
    summary="score unlabelled images with a trained detector: P(Fake) and a call per image "
    "and per face.",
    example="deepfake-predict ckpt_path=outputs/train/<run> input=<image or folder>",
    task=_predict,
    config="predict",
    rules=PREDICT_RULES,
)
COMPARE = Command(
    name="compare",
    summary="compare training runs: one table, the best run on validation, figures.",
    example="deepfake-compare multirun/<date>_<time>",
    task=_compare,
)
AUDIT = Command(
    name="audit",
    summary="check a Fake/Real dataset before training: counts, bad files, duplicates, leakage.",
    example="deepfake-audit data.root=<dataset> audit.fail_on=exact",
    task=_audit,
    config="audit",
    rules=AUDIT_RULES,
)
EXPORT = Command(
    name="export",
    summary="export a trained detector as ONNX or a torch.export program, checked for parity.",
    example="deepfake-export ckpt_path=outputs/train/<run> format=onnx",
    task=_export,
    config="export",
    rules=EXPORT_RULES,
)
SERVE = Command(
    name="serve",
    summary="serve a trained detector over HTTP, with a web page and Grad-CAM.",
    example="deepfake-serve ckpt_path=outputs/train/<run> backend=onnx port=8000",
    task=_serve,
    config="serve",
    rules=SERVE_RULES,
)

#: Every command, by name.
COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (TRAIN, EVALUATE, ROBUSTNESS, PREDICT, COMPARE, AUDIT, EXPORT, SERVE)
}


def table() -> str:
    """The commands as a Markdown table (`python -m deepfake_detection` prints it)."""
    lines = ["| command | what it does | example |", "|---|---|---|"]
    lines += [f"| `{c.script}` | {c.summary} | `{c.example}` |" for c in COMMANDS.values()]
    return "\n".join(lines)


# --- `python -m deepfake_detection.<name>` --------------------------------------------------------


class _CommandModule(importlib.abc.InspectLoader):
    """The module `deepfake_detection.<name>` of a command: importing it gives `command` and
    `cli`; running it (`python -m`) runs the command."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)

    def get_source(self, fullname: str) -> str:
        command = COMMANDS[fullname.rpartition(".")[2]]
        return (
            f'"""`{command.script}`: {command.summary}"""\n'
            "from deepfake_detection.commands import COMMANDS\n"
            f"command = COMMANDS[{command.name!r}]\n"
            "cli = command.cli\n"
            "if __name__ == '__main__':\n"
            "    cli()\n"
        )


def command_module_spec(fullname: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of `deepfake_detection.<name>` when `name` is a command, else None: what the
    package's module finder answers, for names that no file provides."""
    package, _, name = fullname.rpartition(".")
    if package != __package__ or name not in COMMANDS:
        return None
    return importlib.util.spec_from_loader(fullname, _CommandModule(), origin=__name__)
