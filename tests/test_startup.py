"""A command's start: modules imported for nothing are deferred until something reads them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deepfake_detection.startup import DeferredModule, after_import, defer_module


@pytest.fixture
def package(tmp_path, monkeypatch):
    """`pkg_deferred.heavy`: a subpackage that records its own import."""
    heavy = tmp_path / "pkg_deferred" / "heavy"
    heavy.mkdir(parents=True)
    (tmp_path / "pkg_deferred" / "__init__.py").write_text("")
    (heavy / "__init__.py").write_text(
        textwrap.dedent(
            """
            import builtins
            builtins.heavy_imports = getattr(builtins, "heavy_imports", 0) + 1
            def work():
                return "real"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield heavy
    for name in ("pkg_deferred.heavy", "pkg_deferred"):
        sys.modules.pop(name, None)
    import builtins

    builtins.__dict__.pop("heavy_imports", None)


def test_a_deferred_module_loads_on_the_first_attribute_it_lacks(package):
    import builtins

    assert defer_module("pkg_deferred.heavy", {"shim": "stand-in"})
    import pkg_deferred.heavy as heavy

    assert isinstance(heavy, DeferredModule)
    assert heavy.shim == "stand-in" and hasattr(heavy, "shim")
    assert heavy.__file__ == str(package / "__init__.py")  # what `inspect.getmodule` reads
    assert getattr(builtins, "heavy_imports", 0) == 0  # nothing imported yet

    assert heavy.work() == "real"  # first other read: the real module, once
    assert builtins.heavy_imports == 1
    real = sys.modules["pkg_deferred.heavy"]
    assert not isinstance(real, DeferredModule)
    assert real.shim == "stand-in"  # what the first importer saw stays true
    from pkg_deferred.heavy import work

    assert work() == "real" and builtins.heavy_imports == 1


def test_nothing_is_deferred_that_is_imported_already_or_not_installed(package):
    import pkg_deferred.heavy  # noqa: F401

    assert not defer_module("pkg_deferred.heavy", {})
    assert not defer_module("no_such_package_here.heavy", {})
    assert not defer_module("pkg_deferred.missing", {})


def test_a_callback_runs_once_the_module_is_imported(package):
    import builtins

    seen: list[tuple[str, int]] = []

    def imported(tag: str) -> None:
        seen.append((tag, getattr(builtins, "heavy_imports", 0)))

    after_import("pkg_deferred", lambda: imported("first"))
    after_import("pkg_deferred", lambda: imported("second"))
    assert seen == []  # nothing imports it for the callbacks' sake
    import pkg_deferred.heavy  # noqa: F401

    # After the package's own code ran (here, while its subpackage was imported), once each.
    assert [tag for tag, _ in seen] == ["first", "second"]
    import importlib

    importlib.reload(sys.modules["pkg_deferred"])
    assert len(seen) == 2
    after_import("pkg_deferred", lambda: imported("late"))  # imported already: at once
    assert seen[-1][0] == "late"


@pytest.mark.slow
def test_a_command_start_imports_lightning_without_scipy_signal():
    """Lightning imports torchmetrics, which imports `scipy.signal` for a shim; a command
    defers it (half a second of every run)."""
    code = textwrap.dedent(
        """
        import sys
        from deepfake_detection.startup import prepare_process
        prepare_process()
        import lightning, torchmetrics
        print(type(sys.modules["scipy.signal"]).__name__)
        import scipy.signal
        print(scipy.signal.windows.hamming(3).shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["DeferredModule", "(3,)"]
