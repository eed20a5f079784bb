"""What every command does first, so that a short job is not mostly start-up and shut-down.

A training run of a few seconds used to spend about as long importing and exiting as it did
training. Two costs did not depend on the job:

- `import torchmetrics` (which Lightning does to read its version) imports `scipy.signal`
  whenever SciPy is installed, for a compatibility shim of an audio test dependency
  (`scipy.signal.hamming`): about half a second, for a module no command uses. Until the
  library stops doing so, `defer_module` puts a stand-in with that one attribute in its
  place; the real module is imported the first time anything else is read from it.
- Python's cyclic collector walks every object there is, time and again while modules
  import (most of a second for torch, torchvision and Lightning) and once more at exit (over
  a second). It is paused while a command imports (`prepare_process`); once the command has
  what it needs (`imports_done`), the objects made so far are frozen out of its walks
  (`gc.freeze`), and so they are again at exit. Objects are still released by reference
  counting, finalizers still run; cycles made while importing stay until exit.

A library that only needs adjusting once it is there (Lightning adds a console handler of its
own on import) is adjusted by `after_import`, right after whatever imports it, so that a
command that never uses it (predict with an exported model) does not import it for that.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any


def _hamming(*args: Any, **kwargs: Any) -> Any:
    """`scipy.signal.hamming`, moved to `scipy.signal.windows` by SciPy."""
    return importlib.import_module("scipy.signal.windows").hamming(*args, **kwargs)


#: Modules imported for nothing on every command's path, with the attributes their importer
#: reads from them at import time.
DEFERRED: Mapping[str, Mapping[str, Any]] = {"scipy.signal": {"hamming": _hamming}}


class DeferredModule(ModuleType):
    """Stands in `sys.modules` for a module until an attribute it lacks is read: then the
    real module is imported (and replaces it there), and every read goes to that."""

    def __init__(self, name: str, file: str, attributes: Mapping[str, Any]) -> None:
        super().__init__(name)
        self.__file__ = file  # `inspect.getmodule` reads it from every module there is
        self.__dict__.update(attributes)
        self.__dict__["_deferred_real"] = None

    def __getattr__(self, name: str) -> Any:  # only for attributes the stand-in lacks
        return getattr(self.deferred_load(), name)

    def deferred_load(self) -> ModuleType:
        real = self.__dict__["_deferred_real"]
        if real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            for key, value in self.__dict__.items():  # what the importer saw stays true
                if not key.startswith("_") and not hasattr(real, key):
                    setattr(real, key, value)
            self.__dict__["_deferred_real"] = real
        return real


def defer_module(name: str, attributes: Mapping[str, Any]) -> bool:
    """Put a `DeferredModule` for `name` (a package inside a top-level one) in
    `sys.modules`, unless it is imported already or not installed. Returns whether it did."""
    parent, _, child = name.rpartition(".")
    if name in sys.modules or not parent:
        return False
    spec = importlib.util.find_spec(parent)  # imports nothing: `parent` is top-level
    if spec is None or not spec.submodule_search_locations:
        return False  # not installed: the importer's own check says so
    file = Path(spec.submodule_search_locations[0]) / child / "__init__.py"
    if not file.is_file():
        return False
    sys.modules[name] = DeferredModule(name, str(file), attributes)
    return True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs callbacks right after a top-level module is first imported: it finds the
    module's spec through the other finders and wraps its loader's `exec_module`."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[Callable[[], None]]] = {}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        callbacks = self.waiting.pop(fullname, None)
        if callbacks is None:
            return None
        if not self.waiting and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            for callback in callbacks:
                callback()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_after_import = _AfterImport()


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Call `callback` once the top-level module `name` is imported: now if it already is,
    else as soon as its import completes (so a command that never needs it never pays for
    importing it just to adjust it)."""
    if name in sys.modules:
        callback()
        return
    _after_import.waiting.setdefault(name, []).append(callback)
    if _after_import not in sys.meta_path:
        sys.meta_path.insert(0, _after_import)


def prepare_process() -> None:
    """Called by every command before it imports anything heavy; `imports_done` must follow
    (`Command.cli` makes sure it does)."""
    for name, attributes in DEFERRED.items():
        defer_module(name, attributes)
    if not getattr(prepare_process, "_exit_registered", False):
        # Registered first, so it runs last: after Lightning's and the loggers' own hooks.
        atexit.register(gc.freeze)
        prepare_process._exit_registered = True  # type: ignore[attr-defined]
    gc.disable()


def imports_done() -> None:
    """The collector back on, without the objects of start-up to walk. Idempotent."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
