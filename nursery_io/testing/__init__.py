"""Helpers for testing code that uses nursery_io."""

from .._core import MockClock, wait_all_tasks_blocked

__all__ = ["MockClock", "wait_all_tasks_blocked"]
