"""The command table: every entry point comes from it, and each command's help is its own."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from deepfake_detection.commands import COMMANDS, table

#: Config groups of training that a scoring command must not offer in its help.
TRAINING_GROUPS = ("optimizer", "scheduler", "early_stopping", "augment", "freeze")


def test_every_console_script_points_at_the_table() -> None:
    """As installed (pyproject.toml's `[project.scripts]`)."""
    scripts = {
        script.name: script.value
        for script in entry_points(group="console_scripts")
        if script.name.startswith("deepfake-")
    }
    expected = {
        command.script: f"deepfake_detection.commands:{name.upper()}.cli"
        for name, command in COMMANDS.items()
    }
    assert scripts == expected


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_a_module_built_from_the_table(name: str) -> None:
    module = importlib.import_module(f"deepfake_detection.{name}")
    assert module.command is COMMANDS[name] and module.cli == COMMANDS[name].cli
    assert COMMANDS[name].summary in module.__doc__


def test_a_name_that_is_no_command_is_no_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("deepfake_detection.no_such_command")


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.config is not None])
def test_help_says_what_the_command_does_and_lists_only_its_own_config(name: str) -> None:
    command = COMMANDS[name]
    text = command.help_text()
    assert text.startswith(f"{command.script}: {command.summary}")
    assert f"Example:\n  {command.example}" in text
    assert f"{name} is powered by Hydra" in text
    if name == "train":
        assert all(f"\n  {group}: " in text for group in TRAINING_GROUPS)
    else:
        assert not any(f"{group}:" in text for group in TRAINING_GROUPS), text
    if name in ("evaluate", "robustness", "predict", "export", "serve"):
        assert "ckpt_path: ???" in text


def test_evaluate_help_offers_its_perturbations() -> None:
    text = COMMANDS["evaluate"].help_text()
    assert "  perturb: none, blur, jpeg, noise, resize" in text


def test_help_runs_without_hydra_starting(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["deepfake-predict", "--help"])
    COMMANDS["predict"].cli()
    out = capsys.readouterr().out
    assert out.startswith("deepfake-predict: ") and "input: ???" in out


def test_the_table_lists_every_command() -> None:
    text = table()
    assert all(f"`{command.script}`" in text for command in COMMANDS.values())


def test_help_follows_the_overrides_given() -> None:
    train = COMMANDS["train"]
    assert "weights_path" not in train.help_text()
    chosen = train.help_text(["model=mobilenet_v2"])
    assert "weights_path" in chosen and "  model: mobilenet_v2, clip, custom_cnn, timm" in chosen
    assert train.help_text(["model=no_such_model"]) == train.help_text()


@pytest.mark.slow  # a subprocess: torch is imported in this one already
def test_the_table_and_the_scoring_commands_rules_load_without_torch() -> None:
    """A mistyped key of evaluate, predict, ... is answered before torch loads."""
    code = (
        "import sys\n"
        "from omegaconf import OmegaConf\n"
        "from deepfake_detection.commands import COMMANDS\n"
        "for command in COMMANDS.values():\n"
        "    if command.name != 'train' and command.rules is not None:\n"
        "        rules = command.rules\n"
        "        assert rules(OmegaConf.create()) if callable(rules) else rules\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
