"""Deprecation warnings, worded and classed as Trio's (tests match on them)."""

from __future__ import annotations

import warnings

__all__ = ["TrioDeprecationWarning", "warn_deprecated"]


class TrioDeprecationWarning(FutureWarning):
    """Warns about deprecated Trio-compatible API that nursery_io still provides.

    A :class:`FutureWarning` (shown by default, unlike :class:`DeprecationWarning`), as in
    Trio; filter it with ``-W`` or :mod:`warnings` like any other warning.
    """


def warn_deprecated(
    thing: str,
    version: str,
    *,
    issue: int,
    instead: str,
    stacklevel: int,
    category: type[Warning] = DeprecationWarning,
) -> None:
    """Warn that ``thing`` is deprecated, with Trio's text (``version`` and ``issue`` are
    Trio's, since that is where the deprecation comes from)."""
    message = (
        f"{thing} is deprecated since Trio {version}; use {instead} instead "
        f"(https://github.com/python-trio/trio/issues/{issue})"
    )
    # +1: the caller's stacklevel counts from the caller, not from here.
    warnings.warn(category(message), stacklevel=stacklevel + 1)
