"""Deprecation warnings (they live in ``_core``, whose ``run`` and ``open_nursery`` warn too)."""

from ._core._deprecate import TrioDeprecationWarning, warn_deprecated

__all__ = ["TrioDeprecationWarning", "warn_deprecated"]
