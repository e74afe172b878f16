"""The package's import structure: lowlevel is a façade over _core, _core exports what the
library needs (lazily where it costs), and no import order is load-bearing.

The layer rules themselves are checked by ``lint-imports`` (pyproject.toml, .ci/run).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import nursery_io._core
import nursery_io.lowlevel


def _run_fresh(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


# Modules that used to sit on the import cycle lowlevel -> _subprocess -> _sync ->
# lowlevel, plus the integrations; each must import on its own in a fresh interpreter.
@pytest.mark.parametrize(
    "module",
    [
        "nursery_io.lowlevel",
        "nursery_io._subprocess",
        "nursery_io._sync",
        "nursery_io._timeouts",
        "nursery_io._threads",
        "nursery_io._channel",
        "nursery_io.testing",
        "nursery_io.anyio_backend",
        "nursery_io._core._abc_clock",
    ],
)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    assert _run_fresh(f"import {module}; print('ok')") == "ok"


def test_the_core_runtime_and_sync_primitives_do_not_load_the_file_engine() -> None:
    # Library modules import from _core, not from lowlevel (which loads the op
    # constructors and with them ctypes).
    code = (
        "import sys, nursery_io\n"
        "nursery_io.Lock, nursery_io.sleep, nursery_io.open_memory_channel\n"
        "print(sorted(m for m in ('ctypes', 'nursery_io.lowlevel', 'nursery_io._kernel.ops')"
        " if m in sys.modules))\n"
    )
    assert _run_fresh(code) == "[]"


@pytest.mark.parametrize(
    "name",
    [
        "ops",
        "read_at",
        "run_op",
        "start_guest_run",
        "start_thread_soon",
        "add_instrument",
        "remove_instrument",
        "Instrument",
        "checkpoint",
    ],
)
def test_core_exports_the_same_objects_as_lowlevel(name: str) -> None:
    assert getattr(nursery_io._core, name) is getattr(nursery_io.lowlevel, name)
    assert name in dir(nursery_io._core)


def test_core_lazy_names_load_on_first_use_only() -> None:
    code = (
        "import sys, nursery_io._core as core\n"
        "before = 'ctypes' in sys.modules\n"
        "from nursery_io._core import run_op\n"
        "print(before, 'ctypes' in sys.modules, run_op is core._ops.run_op)\n"
    )
    assert _run_fresh(code) == "False True True"


def test_core_has_no_other_attributes() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        nursery_io._core.no_such_name  # type: ignore[attr-defined]  # noqa: B018
