"""The documented commands run this project's code even where other packages share its names.

Hugging Face's `evaluate` (and any package called `predict`, `compare` or `audit`) is a
top-level package: ahead of ours on the path, it wins `python -m evaluate`. The documented
forms, `deepfake-<command>` and `python -m deepfake_detection.<command>`, must not care.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COMMANDS = ("evaluate", "predict", "compare", "audit")


def console_script(name: str) -> str:
    """The installed `deepfake-<name>` script, beside this interpreter."""
    path = Path(sys.executable).parent / f"deepfake-{name}"
    found = str(path) if path.is_file() else shutil.which(f"deepfake-{name}")
    assert found, f"deepfake-{name} is not installed: pip install -e ."
    return found


@pytest.fixture(scope="module")
def shadowed_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where a package named like each command comes first on the path."""
    shadow = tmp_path_factory.mktemp("site")
    for name in COMMANDS:
        (shadow / name).mkdir()
        (shadow / name / "__init__.py").write_text(f'"""Another project\'s `{name}`."""\n')
    path = os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "MOBILENET_V2_WEIGHTS": ""}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_shadowing_is_real(shadowed_env: dict[str, str], tmp_path: Path) -> None:
    """Without this, the test below would prove nothing."""
    result = run([sys.executable, "-m", "evaluate", "ckpt_path=x"], tmp_path, shadowed_env)
    assert result.returncode != 0
    assert "'evaluate' is a package and cannot be directly executed" in result.stderr


def test_documented_forms_evaluate_a_run_when_shadowed(
    shadowed_env: dict[str, str], tiny_run: Path, tmp_path: Path
) -> None:
    forms = {
        "script": [console_script("evaluate")],
        "module": [sys.executable, "-m", "deepfake_detection.evaluate"],
    }
    runs = {
        form: subprocess.Popen(
            [*command, f"ckpt_path={tiny_run}", f"hydra.run.dir={tmp_path / form}"],
            cwd=tmp_path,
            env=shadowed_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for form, command in forms.items()
    }
    for form, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, (form, stderr[-2000:])
        assert (tmp_path / form / "metrics.json").is_file(), form
        assert "test split of" in stdout, form


@pytest.mark.parametrize(
    "name", ["predict", "compare", "audit", "train", "robustness", "export", "serve"]
)
def test_documented_forms_start_the_other_commands_when_shadowed(
    name: str, shadowed_env: dict[str, str], tmp_path: Path
) -> None:
    """`--help` imports the command's own module, then stops before any work."""
    expected = "deepfake-compare" if name == "compare" else f"{name} is powered by Hydra"
    for command in (
        [console_script(name), "--help"],
        [sys.executable, "-m", f"deepfake_detection.{name}", "--help"],
    ):
        result = run(command, tmp_path, shadowed_env)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        assert expected in result.stdout, command


@pytest.mark.parametrize("name", ["train"])
def test_the_short_spellings_work_where_nothing_shadows_them(name: str, tmp_path: Path) -> None:
    result = run([sys.executable, "-m", name, "--help"], tmp_path, dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("deepfake-compare" if name == "compare" else "powered by Hydra") in result.stdout
