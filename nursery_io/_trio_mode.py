"""Trio mode: unmodified trio code, its libraries and its tests run on nursery_io.

After :func:`install_as_trio`, ``import trio`` (and ``import trio.lowlevel``,
``trio.testing``, ...) gives nursery_io's modules, and inside a run
``sniffio.current_async_library()`` answers ``"trio"``, so libraries that branch on the
async library's name (httpcore, anyio's trio backend, ...) take their trio path.

The alias is a ``sys.meta_path`` finder placed first, so that it wins over a real trio
installed in the same environment: ``trio.X`` is answered with ``nursery_io.X`` when that
module exists, and with a clear :exc:`ModuleNotFoundError` when it doesn't, never with a
module of the real trio (mixing two runtimes' internals fails in confusing ways).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Final, cast

from ._core import set_library_name

if TYPE_CHECKING:
    from importlib.abc import Loader, MetaPathFinder

__all__ = ["TRIO_NAME", "install_as_trio", "trio_mode_active"]

#: The package name trio mode answers for, and the name sniffio reports in trio mode.
TRIO_NAME: Final = "trio"
_OWN_NAME: Final = "nursery_io"


def _alias_target(fullname: str) -> str | None:
    """``trio.lowlevel`` -> ``nursery_io.lowlevel``; None for names outside ``trio``."""
    if fullname == TRIO_NAME:
        return _OWN_NAME
    if fullname.startswith(TRIO_NAME + "."):
        return _OWN_NAME + fullname[len(TRIO_NAME) :]
    return None


class _AliasLoader:
    """Hands out the already-imported nursery_io module under its trio name."""

    def __init__(self, target: ModuleType) -> None:
        self._target = target
        self._target_spec = target.__spec__

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self._target

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec onto the module; the module keeps its
        # own, so ``nursery_io.X.__spec__.name`` stays true (pickling, reload, -m).
        module.__spec__ = self._target_spec
        _load_lazy_names(module)


def _load_lazy_names(module: ModuleType) -> None:
    """Import every name ``module`` would otherwise load on first use.

    Trio's modules import all their names up front, and code written for trio may walk
    ``vars(trio)``: it must see every name, and must not see the dict change under it when
    a lazily loaded name is touched mid-walk. So in trio mode nursery_io's modules are
    complete from the start; outside it they stay lazy (cheaper start-up).
    """
    lazy = getattr(module, "_LAZY", None)
    if isinstance(lazy, dict):
        for name in lazy:
            value = getattr(module, name)
            if isinstance(value, ModuleType):  # trio.lowlevel, reached as an attribute
                _load_lazy_names(value)


class TrioAliasFinder:
    """A ``sys.meta_path`` finder answering ``trio`` and ``trio.*`` with nursery_io's."""

    _nursery_io_trio_alias = True

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        own_name = _alias_target(fullname)
        if own_name is None:
            return None
        try:
            module = importlib.import_module(own_name)
        except ModuleNotFoundError as exc:
            if exc.name != own_name:
                raise  # something the nursery_io module itself imports is missing
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: nursery_io's trio mode provides trio's public "
                f"modules, and {fullname!r} is not one of them",
                name=fullname,
            ) from None
        return ModuleSpec(fullname, cast("Loader", _AliasLoader(module)), origin=own_name)

    def invalidate_caches(self) -> None:
        pass


def _real_trio_modules() -> list[str]:
    """Names of imported modules that belong to a real trio (not our alias)."""
    own = sys.modules.get(_OWN_NAME)
    found = []
    for name, module in list(sys.modules.items()):
        if _alias_target(name) is None or module is None:
            continue
        module_name = getattr(module, "__name__", "")
        if module is own or module_name == _OWN_NAME or module_name.startswith(_OWN_NAME + "."):
            continue
        found.append(name)
    return found


def trio_mode_active() -> bool:
    """True once :func:`install_as_trio` has run in this process."""
    return any(getattr(finder, "_nursery_io_trio_alias", False) for finder in sys.meta_path)


def install_as_trio() -> None:
    """Make ``import trio`` give nursery_io, and sniffio answer ``"trio"`` in runs.

    Call it once at program start, before anything imports trio (``python -m nursery_io
    run --as-trio`` does it for you). Calling it again is harmless. If a real trio is
    already imported, modules holding references to it would mix two runtimes, so this
    raises :exc:`RuntimeError` instead.
    """
    if trio_mode_active():
        return
    already = _real_trio_modules()
    if already:
        where = getattr(sys.modules[already[0]], "__file__", None) or "?"
        raise RuntimeError(
            "install_as_trio() must be called before anything imports trio, but "
            f"{already[0]!r} is already imported (from {where}); call it first thing in "
            "the program, or start the program with 'python -m nursery_io run --as-trio'"
        )
    sys.meta_path.insert(0, cast("MetaPathFinder", TrioAliasFinder()))
    set_library_name(TRIO_NAME)
    # The package itself eagerly, so ``sys.modules["trio"]`` is there for code that looks.
    importlib.import_module(TRIO_NAME)
    _provide_private_attributes()


def _provide_private_attributes() -> None:
    """The few private trio submodules that libraries reach as attributes at import time.

    trio's private modules are not provided (see the module docstring), but quart-trio
    names ``trio._file_io.AsyncIOWrapper`` in annotations evaluated when it is imported.
    ``trio._file_io`` is reachable as an attribute; importing it still fails.
    """
    own = importlib.import_module(_OWN_NAME)
    if not hasattr(own, "_file_io"):
        own._file_io = importlib.import_module(_OWN_NAME + "._files._file_io")  # type: ignore[attr-defined]
