"""Train, compare and ship binary Real/Fake image classifiers.

The commands and their entry points are listed in `deepfake_detection.commands`.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any

__version__ = "0.1.0"


class _CommandFinder(MetaPathFinder):
    """`python -m deepfake_detection.<command>`: the command table provides each command's
    module (`commands.command_module_spec`). Consulted after the usual finders, so only for
    names that no file provides."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname.count(".") != 1 or not fullname.startswith(f"{__name__}."):
            return None
        from deepfake_detection.commands import command_module_spec

        return command_module_spec(fullname)


if not any(isinstance(finder, _CommandFinder) for finder in sys.meta_path):
    sys.meta_path.append(_CommandFinder())
