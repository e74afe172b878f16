"""PEP 562 lazy names for a module: loaded on first use, then cached in the module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LazyTable", "lazy_attributes"]

#: name -> (module to import, relative to the caller's package if it starts with a dot;
#: the attribute to take from it, or None for the module itself).
LazyTable = Mapping[str, tuple[str, str | None]]


def lazy_attributes(
    namespace: dict[str, Any], table: LazyTable
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` that load ``table``'s names on first use.

    Call it from the module itself with ``globals()``. Keep the result hidden from type
    checkers (``if not TYPE_CHECKING``): a visible module ``__getattr__`` would make them
    accept any attribute name, typos included; list the lazy names for them in an
    ``if TYPE_CHECKING`` import instead.
    """
    module_name = namespace["__name__"]
    package = namespace["__package__"]

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        import importlib

        target, attribute = where
        module = importlib.import_module(target, package)
        value = module if attribute is None else getattr(module, attribute)
        namespace[name] = value  # later lookups don't come back here
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | table.keys())

    return __getattr__, __dir__
