"""How anyio finds the backend, and anyio.run() on it."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import anyio
import pytest
import sniffio
from anyio.abc import AsyncBackend

import nursery_io
from nursery_io.anyio_backend import BACKEND_MODULE, BACKEND_NAME, install
from nursery_io.anyio_backend._backend import NurseryIOBackend


def _run_fresh(code: str) -> str:
    """The output of ``code`` run in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_importing_nursery_io_does_not_import_anyio() -> None:
    code = "import sys, nursery_io; print('anyio' in sys.modules)"
    output = _run_fresh(code)
    assert output.strip() == "False"


def test_anyio_run_works_in_a_fresh_interpreter() -> None:
    # Only nursery_io is imported first; anyio finds the backend through the finder.
    code = (
        "import nursery_io, anyio\n"
        "async def main(x):\n"
        "    await anyio.sleep(0)\n"
        "    return x + 1\n"
        "print(anyio.run(main, 41, backend='nursery_io'))\n"
    )
    output = _run_fresh(code)
    assert output.strip() == "42"


def test_the_package_root_is_the_one_place_that_installs_the_finder() -> None:
    # Importing the finder's module does nothing by itself; nursery_io/__init__.py calls
    # install() once.
    code = (
        "import importlib, sys\n"
        "import nursery_io.anyio_backend._finder as finder\n"
        "def ours():\n"
        "    return [f for f in sys.meta_path if getattr(f, '_nursery_io_anyio_finder', 0)]\n"
        "print(len(ours()))\n"
        "for f in ours():\n"
        "    sys.meta_path.remove(f)\n"
        "importlib.reload(finder)\n"
        "print(len(ours()))\n"
        "finder.install()\n"
        "print(len(ours()))\n"
    )
    output = _run_fresh(code)
    assert output.split() == ["1", "0", "1"]


def test_the_alias_module_names_our_backend_class() -> None:
    module = importlib.import_module(BACKEND_MODULE)
    assert module.backend_class is NurseryIOBackend
    assert BACKEND_MODULE == f"anyio._backends._{BACKEND_NAME}"


def test_install_is_idempotent_and_leaves_other_names_alone() -> None:
    install()
    install()
    finders = [f for f in sys.meta_path if getattr(f, "_nursery_io_anyio_finder", False)]
    assert len(finders) == 1
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("anyio._backends._no_such_backend")


def test_every_abstract_method_is_implemented() -> None:
    assert not inspect.isabstract(NurseryIOBackend)
    abstract = AsyncBackend.__abstractmethods__
    assert len(abstract) == 44  # anyio 4.16; a new abstract method needs a new release
    for name in abstract:
        assert getattr(NurseryIOBackend, name) is not getattr(AsyncBackend, name), name


def test_run_returns_the_result_and_marks_the_library() -> None:
    seen: dict[str, object] = {}

    async def main(a: int, b: int) -> int:
        seen["library"] = sniffio.current_async_library()
        seen["in_run"] = nursery_io.lowlevel.in_run()
        seen["name"] = anyio.get_current_task().name
        await anyio.sleep(0)
        return a * b

    assert anyio.run(main, 6, 7, backend="nursery_io") == 42
    assert seen == {
        "library": "nursery_io",
        "in_run": True,
        "name": f"{__name__}.test_run_returns_the_result_and_marks_the_library.<locals>.main",
    }


def test_run_accepts_functions_returning_other_awaitables() -> None:
    class Answer:
        def __await__(self):  # type: ignore[no-untyped-def]
            yield from anyio.sleep(0).__await__()
            return 42

    assert anyio.run(Answer, backend="nursery_io") == 42


def test_run_passes_options_and_propagates_errors() -> None:
    clock = nursery_io.testing.MockClock(autojump_threshold=0)

    async def main() -> float:
        start = anyio.current_time()
        await anyio.sleep(1000)
        return anyio.current_time() - start

    assert anyio.run(main, backend="nursery_io", backend_options={"clock": clock}) == 1000

    async def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        anyio.run(fails, backend="nursery_io")


def test_current_token_is_hashable_weakrefable_and_per_run() -> None:
    import weakref

    async def main() -> object:
        token = anyio.lowlevel.current_token()
        assert token == anyio.lowlevel.current_token()
        hash(token)
        assert weakref.ref(token.native_token)() is nursery_io.lowlevel.current_token()
        return token.native_token

    assert anyio.run(main, backend="nursery_io") is not anyio.run(main, backend="nursery_io")


def test_run_var_is_per_run() -> None:
    var: anyio.lowlevel.RunVar[int] = anyio.lowlevel.RunVar("counter", default=0)

    async def bump() -> int:
        var.set(var.get() + 1)
        return var.get()

    assert anyio.run(bump, backend="nursery_io") == 1
    assert anyio.run(bump, backend="nursery_io") == 1
