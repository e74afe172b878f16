"""Errors raised by the kernel layer and re-exported publicly by the core."""

from __future__ import annotations

__all__ = ["BusyResourceError", "ClosedResourceError"]


class BusyResourceError(Exception):
    """Raised when a task tries to use a resource that another task is already using.

    For example, two tasks waiting for the same socket to become readable at once.
    """


class ClosedResourceError(Exception):
    """Raised when using a resource that was closed, or is closed while you are waiting on it."""
