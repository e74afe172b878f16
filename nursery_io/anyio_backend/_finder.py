"""Make ``anyio._backends._nursery_io`` importable without touching anyio.

anyio's ``get_async_backend(name)`` does ``import_module(f"anyio._backends._{name}")`` and
caches ``module.backend_class``. A finder at the end of ``sys.meta_path`` answers that one
name with a small alias module whose ``backend_class`` is ours; every other import is left
to the normal finders (which run first and find nothing for this name). Cheap to install:
anyio is not imported until anyio itself asks for the module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from importlib.abc import Loader, MetaPathFinder

__all__ = ["BACKEND_MODULE", "BACKEND_NAME", "install"]

#: The name to pass to ``anyio.run(..., backend=...)``.
BACKEND_NAME: Final = "nursery_io"
#: The module name anyio imports for that backend.
BACKEND_MODULE: Final = f"anyio._backends._{BACKEND_NAME}"
_IMPLEMENTATION: Final = "nursery_io.anyio_backend._backend"


class _AliasLoader:
    """Fills the alias module from the real implementation module."""

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default: a fresh, empty module

    def exec_module(self, module: ModuleType) -> None:
        implementation = importlib.import_module(_IMPLEMENTATION)
        module.__doc__ = implementation.__doc__
        module.backend_class = implementation.backend_class  # type: ignore[attr-defined]


class BackendFinder:
    """A ``sys.meta_path`` finder for exactly :data:`BACKEND_MODULE`."""

    # Checked by install() instead of the class itself, so a reloaded module doesn't add a
    # second finder.
    _nursery_io_anyio_finder = True

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != BACKEND_MODULE:
            return None
        return ModuleSpec(fullname, cast("Loader", _AliasLoader()), origin=_IMPLEMENTATION)

    def invalidate_caches(self) -> None:
        pass


def install() -> None:
    """Register the finder (idempotent).

    Importing this module has no effect by itself: ``nursery_io/__init__.py`` calls this,
    once, so that ``import nursery_io`` is all ``anyio.run(..., backend="nursery_io")``
    needs.
    """
    if not any(getattr(finder, "_nursery_io_anyio_finder", False) for finder in sys.meta_path):
        # Duck-typed finder and loader: importing importlib.abc would cost more than
        # everything else here.
        sys.meta_path.append(cast("MetaPathFinder", BackendFinder()))
