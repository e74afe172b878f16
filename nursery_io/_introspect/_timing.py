"""Per-task busy time, idle time, steps and scheduling delay, from an Instrument.

The instrument is installed only while someone looks (a console client is connected, or a
trace is being recorded) and removed afterwards, so a run nobody watches keeps the
scheduler's instrument-free fast path. Several users share one timer per run, counted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from .._core._abc_clock import Instrument

if TYPE_CHECKING:
    from .._core._runner import Runner
    from .._core._task import Task

__all__ = ["TaskTimer", "acquire_timer", "release_timer", "timer_of"]

_now = time.perf_counter_ns

# Fields of a task's record (a list: cheaper than an object on every step).
_SINCE: Final = 0  # when the timer started watching the task
_STEPS: Final = 1
_BUSY: Final = 2  # ns spent running its steps
_SCHEDULED_AT: Final = 3  # when it last became runnable (0: it isn't waiting to run)
_DELAY_TOTAL: Final = 4  # ns spent runnable but not yet running
_DELAY_MAX: Final = 5

_KEY: Final = object()  # the timer's slot in Runner.run_locals


class TaskTimer(Instrument):
    """Measures every task step. Read the numbers with :meth:`task_timing`."""

    def __init__(self) -> None:
        self.started = _now()
        self._records: dict[Task, list[int]] = {}
        # A timer installed in the middle of a step times the rest of that step.
        self._step_started = self.started
        self.users = 0

    def _record(self, task: Task, now: int) -> list[int]:
        record = self._records.get(task)
        if record is None:
            record = self._records[task] = [now, 0, 0, 0, 0, 0]
        return record

    def watch_existing(self, tasks: Any) -> None:
        now = _now()
        for task in tasks:
            record = self._record(task, now)
            if task._abort_func is None:  # runnable right now
                record[_SCHEDULED_AT] = now

    def task_scheduled(self, task: Task) -> None:
        now = _now()
        self._record(task, now)[_SCHEDULED_AT] = now

    def before_task_step(self, task: Task) -> None:
        now = _now()
        record = self._record(task, now)
        scheduled_at = record[_SCHEDULED_AT]
        if scheduled_at:
            delay = now - scheduled_at
            record[_DELAY_TOTAL] += delay
            record[_DELAY_MAX] = max(record[_DELAY_MAX], delay)
            record[_SCHEDULED_AT] = 0
        self._step_started = now

    def after_task_step(self, task: Task) -> None:
        record = self._records.get(task)
        if record is not None:  # None: the task exited during this step
            record[_STEPS] += 1
            record[_BUSY] += _now() - self._step_started

    def task_exited(self, task: Task) -> None:
        self._records.pop(task, None)

    def task_timing(self, task: Task) -> dict[str, Any]:
        """Seconds busy and idle since the timer started watching the task, steps taken,
        and the mean and worst delay between becoming runnable and running."""
        now = _now()
        record = self._records.get(task)
        if record is None:
            record = [now, 0, 0, 0, 0, 0]
        steps = record[_STEPS]
        busy = record[_BUSY]
        return {
            "steps": steps,
            "busy_s": busy / 1e9,
            "idle_s": max(0, now - record[_SINCE] - busy) / 1e9,
            "sched_delay_avg_s": record[_DELAY_TOTAL] / steps / 1e9 if steps else 0.0,
            "sched_delay_max_s": record[_DELAY_MAX] / 1e9,
            "watched_s": (now - record[_SINCE]) / 1e9,
        }


def timer_of(runner: Runner) -> TaskTimer | None:
    """The run's timer, if one is installed."""
    timer = runner.run_locals.get(_KEY)
    return timer if isinstance(timer, TaskTimer) else None


def acquire_timer(runner: Runner) -> TaskTimer:
    """Install the run's timer (or count one more user of it). Loop thread only."""
    timer = timer_of(runner)
    if timer is None:
        timer = TaskTimer()
        timer.watch_existing(runner.tasks)
        runner.run_locals[_KEY] = timer
        runner.instruments.add_instrument(timer)
    timer.users += 1
    return timer


def release_timer(runner: Runner) -> None:
    """One user less; the last one removes the instrument. Loop thread only."""
    timer = timer_of(runner)
    if timer is None:
        return
    timer.users -= 1
    if timer.users <= 0:
        del runner.run_locals[_KEY]
        try:
            runner.instruments.remove_instrument(timer)
        except KeyError:  # disabled after raising, already gone
            pass
