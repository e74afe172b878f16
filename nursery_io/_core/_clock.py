"""The default clock."""

from __future__ import annotations

import time

from . import _run
from ._abc_clock import Clock

__all__ = ["SystemClock"]


class SystemClock(Clock):
    """``time.perf_counter`` plus a random offset.

    The offset (between 10,000 and 200,000 seconds) flushes out code that assumes the run's
    clock starts at zero or equals some other clock.
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        # Drawn from the scheduler's random source, so seeding it makes a run reproducible.
        self.offset = _run._r.uniform(10_000, 200_000)

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.offset + time.perf_counter()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.current_time()
