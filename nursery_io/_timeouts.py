"""Sleeping and timeouts, built on cancel scopes."""

from __future__ import annotations

import math
from collections.abc import Generator
from contextlib import contextmanager

from ._core import Abort, CancelScope, checkpoint, current_time, wait_task_rescheduled

__all__ = [
    "TooSlowError",
    "fail_after",
    "fail_at",
    "move_on_after",
    "move_on_at",
    "sleep",
    "sleep_forever",
    "sleep_until",
]


class TooSlowError(Exception):
    """Raised by :func:`fail_after` / :func:`fail_at` when the deadline passes."""


def _check_seconds(seconds: float) -> None:
    # Trio's order and texts: a negative value is reported before NaN is looked at.
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    if math.isnan(seconds):
        raise ValueError("`seconds` must not be NaN")


def move_on_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """A cancel scope that cancels itself at the absolute time ``deadline``."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    return CancelScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A cancel scope that cancels itself ``seconds`` after it is entered."""
    _check_seconds(seconds)
    return CancelScope(relative_deadline=seconds, shield=shield)


@contextmanager
def fail_at(deadline: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_at`, but raise :class:`TooSlowError` if the deadline cancels the
    block."""
    with move_on_at(deadline, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError


@contextmanager
def fail_after(seconds: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_after`, but raise :class:`TooSlowError` if the timeout cancels the
    block."""
    with move_on_after(seconds, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError


async def sleep_forever() -> None:
    """Sleep until cancelled."""
    await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)
    raise RuntimeError("Should never have been rescheduled!")


async def sleep_until(deadline: float) -> None:
    """Sleep until the run's clock reaches ``deadline`` (a checkpoint even if it has passed)."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    with move_on_at(deadline):
        await sleep_forever()


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds``. ``sleep(0)`` is a plain checkpoint: it lets others run."""
    if seconds == 0:  # the hot path: sleep(0) as a yield
        await checkpoint()
        return
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    # NaN is reported by sleep_until, as "deadline must not be NaN" (as in Trio).
    await sleep_until(current_time() + seconds)
