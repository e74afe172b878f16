"""anyio's Event, Lock, Semaphore and CapacityLimiter for the nursery_io backend.

Event and CapacityLimiter wrap nursery_io's own (the limiter must be the native one so
that ``to_thread.run_sync`` can use it). Lock and Semaphore are built directly on a
:class:`~nursery_io.lowlevel.ParkingLot` because anyio adds a ``fast_acquire`` mode
(no schedule point when the primitive is free) that nursery_io's versions don't have.
Both hand ownership straight to the longest waiter on release, so a newcomer can never
overtake a task that was woken.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Final, Self

import anyio
from anyio import (
    CapacityLimiterStatistics,
    EventStatistics,
    LockStatistics,
    WouldBlock,
)
from anyio._core._synchronization import SemaphoreStatistics

import nursery_io
from nursery_io import _core

from ._tasks import TaskInfo

__all__ = ["CapacityLimiter", "Event", "Lock", "Semaphore"]


class Event(anyio.Event):
    __slots__ = ("_native",)

    def __new__(cls) -> Self:
        return object.__new__(cls)

    def __init__(self) -> None:
        self._native = nursery_io.Event()

    def set(self) -> None:
        self._native.set()

    def is_set(self) -> bool:
        return self._native.is_set()

    async def wait(self) -> None:
        await self._native.wait()

    def statistics(self) -> EventStatistics:
        return EventStatistics(tasks_waiting=self._native.statistics().tasks_waiting)


class Lock(anyio.Lock):
    __slots__ = ("_fast_acquire", "_lot", "_owner")

    def __new__(cls, *, fast_acquire: bool = False) -> Self:
        return object.__new__(cls)

    def __init__(self, *, fast_acquire: bool = False) -> None:
        self._fast_acquire = fast_acquire
        self._lot = _core.ParkingLot()
        self._owner: _core.Task | None = None

    async def acquire(self) -> None:
        task = _core.current_task()
        if self._owner is None and not self._lot:
            await _core.checkpoint_if_cancelled()
            self._owner = task
            if not self._fast_acquire:
                # A schedule point that can't be cancelled: we already hold the lock.
                await _core.cancel_shielded_checkpoint()
            return
        if self._owner is task:
            raise RuntimeError("Attempted to acquire an already held Lock")
        # release() makes us the owner before waking us; a cancelled wait never owned it.
        await self._lot.park()

    def acquire_nowait(self) -> None:
        task = _core.current_task()
        if self._owner is task:
            raise RuntimeError("Attempted to acquire an already held Lock")
        if self._owner is not None or self._lot:
            raise WouldBlock
        self._owner = task

    def release(self) -> None:
        if self._owner is not _core.current_task():
            raise RuntimeError("The current task is not holding this lock")
        woken = self._lot.unpark()
        self._owner = woken[0] if woken else None

    def locked(self) -> bool:
        return self._owner is not None

    def statistics(self) -> LockStatistics:
        owner = TaskInfo(self._owner) if self._owner is not None else None
        return LockStatistics(self._owner is not None, owner, len(self._lot))


class Semaphore(anyio.Semaphore):
    __slots__ = ("_lot", "_max_value", "_value")

    def __new__(
        cls,
        initial_value: int,
        *,
        max_value: int | None = None,
        fast_acquire: bool = False,
    ) -> Self:
        return object.__new__(cls)

    def __init__(
        self,
        initial_value: int,
        *,
        max_value: int | None = None,
        fast_acquire: bool = False,
    ) -> None:
        # The base class validates the arguments and stores fast_acquire.
        super().__init__(initial_value, max_value=max_value, fast_acquire=fast_acquire)
        self._value = initial_value
        self._max_value = max_value
        self._lot = _core.ParkingLot()

    async def acquire(self) -> None:
        if self._value > 0 and not self._lot:
            await _core.checkpoint_if_cancelled()
            self._value -= 1
            if not self._fast_acquire:
                await _core.cancel_shielded_checkpoint()
            return
        # release() hands its unit straight to us before waking us.
        await self._lot.park()

    def acquire_nowait(self) -> None:
        if self._value == 0 or self._lot:
            raise WouldBlock
        self._value -= 1

    def release(self) -> None:
        if self._lot:
            self._lot.unpark()
            return
        if self._max_value is not None and self._value == self._max_value:
            raise ValueError("semaphore released too many times")
        self._value += 1

    @property
    def value(self) -> int:
        return self._value

    @property
    def max_value(self) -> int | None:
        return self._max_value

    def statistics(self) -> SemaphoreStatistics:
        return SemaphoreStatistics(tasks_waiting=len(self._lot))


# anyio's wording for the borrower mistakes (its test-suite checks it).
_ALREADY_BORROWING: Final = "this borrower is already holding one of this CapacityLimiter's tokens"
_NOT_BORROWING: Final = "this borrower isn't holding any of this CapacityLimiter's tokens"


@contextmanager
def _limiter_errors(misuse_message: str) -> Iterator[None]:
    try:
        yield
    except nursery_io.WouldBlock:
        raise WouldBlock from None
    except RuntimeError as exc:
        # nursery_io raises RuntimeError only for borrower misuse here.
        raise RuntimeError(misuse_message) from exc


class CapacityLimiter(anyio.CapacityLimiter):
    __slots__ = ("_native",)

    def __new__(
        cls,
        total_tokens: float | None = None,
        *,
        native: nursery_io.CapacityLimiter | None = None,
    ) -> Self:
        return object.__new__(cls)

    def __init__(
        self,
        total_tokens: float | None = None,
        *,
        native: nursery_io.CapacityLimiter | None = None,
    ) -> None:
        if native is None:
            assert total_tokens is not None
            native = nursery_io.CapacityLimiter(total_tokens)
        self._native = native

    @property
    def native(self) -> nursery_io.CapacityLimiter:
        """The nursery_io limiter underneath (what ``to_thread.run_sync`` is given)."""
        return self._native

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def total_tokens(self) -> float:
        return self._native.total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        self._native.total_tokens = value

    @property
    def borrowed_tokens(self) -> int:
        return self._native.borrowed_tokens

    @property
    def available_tokens(self) -> float:
        return self._native.available_tokens

    def acquire_nowait(self) -> None:
        self.acquire_on_behalf_of_nowait(_core.current_task())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        with _limiter_errors(_ALREADY_BORROWING):
            self._native.acquire_on_behalf_of_nowait(borrower)

    async def acquire(self) -> None:
        await self.acquire_on_behalf_of(_core.current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        with _limiter_errors(_ALREADY_BORROWING):
            await self._native.acquire_on_behalf_of(borrower)

    def release(self) -> None:
        self.release_on_behalf_of(_core.current_task())

    def release_on_behalf_of(self, borrower: object) -> None:
        with _limiter_errors(_NOT_BORROWING):
            self._native.release_on_behalf_of(borrower)

    def statistics(self) -> CapacityLimiterStatistics:
        native = self._native.statistics()
        return CapacityLimiterStatistics(
            borrowed_tokens=native.borrowed_tokens,
            total_tokens=native.total_tokens,
            borrowers=tuple(native.borrowers),
            tasks_waiting=native.tasks_waiting,
        )
