"""MockClock: virtual time for tests."""

from __future__ import annotations

import math
import time

from ._abc_clock import Clock
from ._context import GLOBAL_RUN_CONTEXT
from ._util import final

__all__ = ["MockClock"]


@final
class MockClock(Clock):
    """A clock whose time only moves when you say so (or at a chosen ``rate``).

    ``rate`` is virtual seconds per real second (default 0: time stands still).
    :meth:`jump` moves time forward by hand. With ``autojump_threshold`` set, whenever every
    task has been blocked for that many *real* seconds the clock jumps straight to the next
    deadline, so a test full of ``sleep(3600)`` finishes instantly while keeping its logic.
    ``autojump_threshold=0`` jumps as soon as the run is idle.
    """

    def __init__(self, rate: float = 0.0, autojump_threshold: float = math.inf) -> None:
        self._real_base = 0.0
        self._virtual_base = 0.0
        self._rate = 0.0
        self._autojump_threshold = 0.0
        # Where real time comes from; tests may swap in a fake (Trio's tests do).
        self._real_clock = time.perf_counter
        self.rate = rate
        self.autojump_threshold = autojump_threshold

    def __repr__(self) -> str:
        return f"<MockClock, time={self.current_time():.7f}, rate={self._rate} @ {id(self):#x}>"

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, new_rate: float) -> None:
        if new_rate < 0:
            raise ValueError("rate must be >= 0")
        # Re-anchor so that changing the rate never makes time jump: virtual time goes on
        # from where it is now, at the new rate.
        real = self._real_clock()
        self._virtual_base = self._real_to_virtual(real)
        self._real_base = real
        self._rate = float(new_rate)

    @property
    def autojump_threshold(self) -> float:
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, new_autojump_threshold: float) -> None:
        if new_autojump_threshold < 0:
            raise ValueError("autojump_threshold must be >= 0")
        self._autojump_threshold = float(new_autojump_threshold)
        self._resync_autojump_threshold()

    def _resync_autojump_threshold(self) -> None:
        runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
        if runner is not None and runner.clock is self:
            runner.clock_autojump_threshold = self._autojump_threshold
            # The loop may be asleep with a timeout computed from the old threshold.
            runner.kernel.wakeup_threadsafe()

    def _autojump(self) -> None:
        runner = GLOBAL_RUN_CONTEXT.runner
        jump = runner.deadlines.next_deadline() - self.current_time()
        if 0 < jump < math.inf:
            self.jump(jump)

    def start_clock(self) -> None:
        self._resync_autojump_threshold()

    def _real_to_virtual(self, real: float) -> float:
        return self._virtual_base + self._rate * (real - self._real_base)

    def current_time(self) -> float:
        return self._real_to_virtual(self._real_clock())

    def deadline_to_sleep_time(self, deadline: float) -> float:
        virtual_timeout = deadline - self.current_time()
        if virtual_timeout <= 0:
            return 0.0
        if self._rate > 0:
            return virtual_timeout / self._rate
        # Time stands still: only a jump (or autojump) can bring the deadline closer.
        return 999_999_999.0

    def jump(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self._virtual_base += seconds
