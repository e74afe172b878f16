"""The Clock and Instrument interfaces (in the core, apart from abc.py, so the core can use them
without pulling in the stream and channel interfaces)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["Clock", "Instrument"]


class Clock(metaclass=ABCMeta):
    """The interface for clocks passed to ``run(clock=...)``."""

    __slots__ = ()

    @abstractmethod
    def start_clock(self) -> None:
        """Called once at the start of the run, before anything reads the time."""

    @abstractmethod
    def current_time(self) -> float:
        """The current time in seconds; must never go backwards."""

    @abstractmethod
    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How many *real* seconds to sleep until ``deadline`` (may be negative: don't sleep)."""


class Instrument(metaclass=ABCMeta):  # noqa: B024 - every hook is optional
    """Base class for run instrumentation; override the hooks you want.

    Hooks run synchronously inside the scheduler: keep them fast and never let them raise
    (an instrument that raises is logged and removed).
    """

    __slots__ = ()

    def before_run(self) -> None:
        """Called once, before the first task runs."""

    def after_run(self) -> None:
        """Called once, after the last task exits."""

    def task_spawned(self, task: Task) -> None:
        """A new task was created."""

    def task_scheduled(self, task: Task) -> None:
        """A task became runnable."""

    def before_task_step(self, task: Task) -> None:
        """A task is about to run one step."""

    def after_task_step(self, task: Task) -> None:
        """A task just ran one step."""

    def task_exited(self, task: Task) -> None:
        """A task finished."""

    def before_io_wait(self, timeout: float) -> None:
        """The loop is about to poll the kernel for up to ``timeout`` seconds."""

    def after_io_wait(self, timeout: float) -> None:
        """The loop just returned from polling the kernel."""
