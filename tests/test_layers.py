"""Imports run one way: config/rules → data/metrics → models → detector → training →
evaluation → commands.

A lower floor importing a higher one (the model importing the evaluation code, say) ties the
parts together in both directions, and a newcomer can no longer tell where a concern lives.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import deepfake_detection

PACKAGE = Path(deepfake_detection.__file__).parent

#: Floor of each top-level module or subpackage of `deepfake_detection`; a module may import
#: from its own floor and the ones below.
FLOORS: dict[str, int] = {
    # foundations: errors, files, config and its rules, console, RNG seeding, checkpoint IO,
    # a command's start and end
    "errors": 0,
    "files": 0,
    "config": 0,
    "rules": 0,
    "console": 0,
    "seeding": 0,
    "checkpoint_io": 0,
    "startup": 0,
    # what a run reads (and the faces and clips in it) and how it is scored
    "data": 1,
    "faces": 1,
    "video": 1,
    "metrics": 1,
    "models": 2,
    # a trained detector (loading, deciding, scoring), and the reports a scoring pass leaves
    "detector": 3,
    "reports": 3,
    # one package per command: none of them imports another (see COMMAND_PACKAGES)
    "training": 4,
    "evaluation": 4,
    "prediction": 4,
    "comparison": 4,
    "auditing": 4,
    "exporting": 4,
    "serving": 4,
    # the command table and what every entry point shares
    "cli": 5,
    "commands": 5,
}

#: The packages that each do one command's work. A command reading another's code would tie
#: them together: what two commands share lives on a lower floor (`detector`, `reports`).
COMMAND_PACKAGES = {part for part, floor in FLOORS.items() if floor == 4}


def _part(module: str) -> str | None:
    """`deepfake_detection.models.base` -> `models`; None for other packages."""
    parts = module.split(".")
    if parts[0] != "deepfake_detection" or len(parts) < 2:
        return None
    return parts[1]


def _package_of(path: Path) -> list[str]:
    """`.../deepfake_detection/models/base.py` -> ["deepfake_detection", "models"]."""
    parts = path.with_suffix("").parts
    start = len(parts) - 1 - parts[::-1].index("deepfake_detection")
    package = list(parts[start:])
    return package if path.name == "__init__.py" else package[:-1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `deepfake_detection` import, function-level and relative ones
    included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = _package_of(path)[: len(_package_of(path)) - node.level + 1]
            found.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if _part(module)]


def test_every_part_has_a_floor() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    parts = {p for p in parts if not p.startswith("_") and p not in {"conf"}}
    parts = {p for p in parts if (PACKAGE / p).is_dir() or (PACKAGE / f"{p}.py").is_file()}
    assert parts - FLOORS.keys() == set(), "give each new module or package a floor here"


def _package_imports() -> Iterator[tuple[Path, str, int, str, str]]:
    """(file, its part, line, imported part, imported module) for every import of one of the
    package's own modules."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        if own not in FLOORS:
            continue  # __init__.py and __main__.py of the package itself
        for line, module in _imports(path):
            yield relative, own, line, _part(module), module


def test_no_import_reaches_up() -> None:
    upward = [
        f"{relative}:{line} ({own}, floor {FLOORS[own]}) imports {module}"
        for relative, own, line, target, module in _package_imports()
        if FLOORS[target] > FLOORS[own]
    ]
    assert upward == []


def test_no_command_package_imports_another() -> None:
    across = [
        f"{relative}:{line} ({own}) imports {module}"
        for relative, own, line, target, module in _package_imports()
        if own in COMMAND_PACKAGES and target in COMMAND_PACKAGES and target != own
    ]
    assert across == []


#: File names every package may have, for the same job in each: its settings (the config
#: keys it reads), its figures.
SHARED_ROLES = {"__init__", "__main__", "settings", "plots"}


def test_one_name_one_job() -> None:
    """No two modules share a file name (but for the roles above): a newcomer finds a concern
    from its folder and file name alone, and no `pipeline.py` hides what it does."""
    by_name: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        by_name.setdefault(path.stem, []).append(str(path.relative_to(PACKAGE)))
    shared = {n: p for n, p in by_name.items() if len(p) > 1 and n not in SHARED_ROLES}
    assert shared == {}
    assert "pipeline" not in by_name


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker finds function-level and relative imports, the kinds easy to miss."""
    module = tmp_path / "deepfake_detection" / "models" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from ..evaluation import figures\n"
        "from . import base\n"
        "def f():\n"
        "    from deepfake_detection.evaluation import inference\n"
    )
    assert sorted(_imports(module)) == [
        (1, "deepfake_detection.evaluation"),
        (2, "deepfake_detection.models"),
        (4, "deepfake_detection.evaluation"),
    ]
