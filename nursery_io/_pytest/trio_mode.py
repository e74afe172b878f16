"""Trio mode for a pytest session: the switching part of ``nursery_io.pytest_plugin``.

In trio mode an unmodified pytest-trio suite runs on nursery_io: ``import trio`` gives
nursery_io (:func:`nursery_io.install_as_trio`) and nursery_io's plugin does pytest-trio's
job. The difficulty is timing. pytest imports its entry-point plugins in no particular
order before it reads any option, and pytest-trio's plugin imports trio when it loads.
So this module, called as early as pytest allows (``pytest_load_initial_conftests``,
before any conftest or test module), undoes what came too early:

* a real trio already imported (by pytest-trio's plugin, or anything else) is taken out of
  :data:`sys.modules`, together with pytest-trio's modules, so that the next
  ``import trio`` / ``from pytest_trio import trio_fixture`` imports them afresh over
  nursery_io;
* pytest-trio's plugin is unregistered and blocked; nursery_io's plugin takes over its
  ini options, marker and fixtures.

A module that kept a reference to the real trio can't be fixed that way; the session is
warned about it.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Final

import pytest

from .._core._context import set_library_name
from .._trio_mode import TRIO_NAME, install_as_trio, trio_mode_active

__all__ = [
    "ENV_VAR",
    "PYTEST_TRIO_PLUGIN",
    "TrioModeSession",
    "env_requests_trio_mode",
    "is_pytest_trio_plugin",
]

#: Set to ``1`` (or ``true``, ``yes``, ``on``) to run pytest sessions in trio mode.
ENV_VAR: Final = "NURSERY_IO_TRIO_MODE"
#: The module pytest-trio registers as its plugin (under the name ``trio``).
PYTEST_TRIO_PLUGIN: Final = "pytest_trio.plugin"
_PYTEST_TRIO_PACKAGE: Final = "pytest_trio"
_OWN_NAME: Final = "nursery_io"


def env_requests_trio_mode() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def is_pytest_trio_plugin(plugin: object) -> bool:
    return getattr(plugin, "__name__", None) == PYTEST_TRIO_PLUGIN


def _is_trio_name(name: str) -> bool:
    return name == TRIO_NAME or name.startswith(TRIO_NAME + ".")


def _is_pytest_trio_name(name: str) -> bool:
    return name == _PYTEST_TRIO_PACKAGE or name.startswith(_PYTEST_TRIO_PACKAGE + ".")


def _is_ours(module: object) -> bool:
    name = getattr(module, "__name__", "")
    return isinstance(name, str) and (name == _OWN_NAME or name.startswith(_OWN_NAME + "."))


@dataclass
class TrioModeSession:
    """What switching to trio mode changed in this process, so that it can be undone."""

    installed_alias: bool = False
    # Modules taken out of sys.modules (real trio, and pytest-trio's that used it).
    removed_modules: dict[str, ModuleType] = field(default_factory=dict)
    # Modules still holding the real trio after the switch (reported as a warning).
    stale_holders: list[str] = field(default_factory=list)

    @classmethod
    def switch_on(cls) -> TrioModeSession:
        """Make ``import trio`` give nursery_io from now on, whatever came before."""
        session = cls()
        if not trio_mode_active():
            real = {
                name: module
                for name, module in list(sys.modules.items())
                if _is_trio_name(name) and module is not None and not _is_ours(module)
            }
            if real:
                session._remove_real_trio(real)
            install_as_trio()
            session.installed_alias = True
        return session

    def _remove_real_trio(self, real: dict[str, ModuleType]) -> None:
        for name in list(sys.modules):
            if _is_pytest_trio_name(name):
                real[name] = sys.modules[name]
        for name in real:
            del sys.modules[name]
        holders = _modules_holding(real)
        for name in _forget_known_holders(holders):
            real[name] = sys.modules.pop(name)
            holders.remove(name)
        self.removed_modules = real
        self.stale_holders = holders

    def switch_off(self) -> None:
        """Undo :meth:`switch_on` (for in-process sessions, such as pytester's)."""
        if not self.installed_alias:
            return
        sys.meta_path[:] = [
            finder
            for finder in sys.meta_path
            if not getattr(finder, "_nursery_io_trio_alias", False)
        ]
        # Modules imported over nursery_io during the session go: the alias itself,
        # pytest-trio's, and anyio's trio backend. What was there before comes back.
        for name, module in list(sys.modules.items()):
            if (_is_trio_name(name) and _is_ours(module)) or _is_pytest_trio_name(name):
                del sys.modules[name]
        if _is_ours(getattr(sys.modules.get(_ANYIO_TRIO_BACKEND), TRIO_NAME, None)):
            del sys.modules[_ANYIO_TRIO_BACKEND]
        _forget_known_holders([_ANYIO_TRIO_BACKEND])
        sys.modules.update(self.removed_modules)
        set_library_name(_OWN_NAME)
        self.installed_alias = False


def _modules_holding(removed: dict[str, ModuleType]) -> list[str]:
    """Names of imported modules with a global that belongs to the removed real trio."""
    removed_ids = {id(module) for module in removed.values()}
    holders = []
    for name, module in list(sys.modules.items()):
        if module is None or _is_pytest_trio_name(name) or _is_trio_name(name):
            continue
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        for value in values:
            owner = (
                getattr(value, "__module__", None) if not isinstance(value, ModuleType) else None
            )
            if id(value) in removed_ids or (isinstance(owner, str) and _is_trio_name(owner)):
                holders.append(name)
                break
    return holders


# anyio's pytest plugin loads every backend it can when it is imported, and anyio keeps
# the backend class in a cache of its own; both are looked up by name again on next use.
_ANYIO_TRIO_BACKEND: Final = "anyio._backends._trio"
_ANYIO_EVENTLOOP: Final = "anyio._core._eventloop"


def _forget_known_holders(holders: list[str]) -> list[str]:
    """The holders that can simply be imported again: forget them (and their caches)."""
    if _ANYIO_TRIO_BACKEND not in holders:
        return []
    loaded_backends = getattr(sys.modules.get(_ANYIO_EVENTLOOP), "loaded_backends", None)
    if isinstance(loaded_backends, dict):
        loaded_backends.pop(TRIO_NAME, None)
    return [_ANYIO_TRIO_BACKEND]


def take_over_pytest_trio(pluginmanager: pytest.PytestPluginManager) -> None:
    """Unregister pytest-trio's plugin and keep it from coming back this session."""
    for name, plugin in list(pluginmanager.list_name_plugin()):
        if is_pytest_trio_plugin(plugin) and name is not None:
            pluginmanager.set_blocked(name)
    # `-p trio`, `pytest_plugins = ["pytest_trio.plugin"]` in a conftest, ... (A conftest
    # that star-imports pytest_trio.enable_trio_mode still works: its automark is the
    # trio_mode ini setting in another form, and it now imports nursery_io as trio.)
    for name in ("trio", PYTEST_TRIO_PLUGIN):
        pluginmanager.set_blocked(name)


def import_private_stand_ins() -> None:
    """Make ``trio._core._run`` reachable as an attribute, as pytest-trio expects."""
    importlib.import_module(_OWN_NAME + "._core._run")
