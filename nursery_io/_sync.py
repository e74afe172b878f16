"""Synchronization primitives: Event, CapacityLimiter, Semaphore, Lock, StrictFIFOLock,
Condition.

All of them keep their own state and sleep on a :class:`~nursery_io.lowlevel.ParkingLot`,
which is FIFO: whoever has waited longest is woken first, and a primitive that becomes
available is handed *directly* to that waiter (it cannot be snatched by a task that shows
up later, which is what makes them fair).

Checkpoints follow Trio's rules: every blocking-capable ``async`` method is a checkpoint,
even when it doesn't need to wait — it checks for cancellation *before* acting, and when
it succeeds without waiting it still yields (cancel-shielded, so the acquired resource is
never lost to a late cancellation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

from ._core import (
    BrokenResourceError,
    Cancelled,
    CancelScope,
    ParkingLot,
    ParkingLotStatistics,
    Task,
    WouldBlock,
    add_parking_lot_breaker,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    remove_parking_lot_breaker,
)
from ._core._util import final

__all__ = [
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "Condition",
    "ConditionStatistics",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "Semaphore",
    "StrictFIFOLock",
]


class _AsyncContextManagerMixin:
    """``async with x:`` = ``await x.acquire()`` ... ``x.release()``."""

    __slots__ = ()

    async def acquire(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def release(self) -> None:
        raise NotImplementedError  # pragma: no cover

    @enable_ki_protection
    async def __aenter__(self) -> None:
        await self.acquire()

    @enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


# ----- Event -----


@dataclass(frozen=True)
class EventStatistics:
    """``tasks_waiting``: how many tasks are blocked in :meth:`Event.wait`."""

    tasks_waiting: int


@final
class Event:
    """A one-shot flag: tasks wait until some task calls :meth:`set`.

    Once set it stays set; there is no ``clear``. (Make a new Event instead: a "clear"
    races with the waiters that have not run yet.)
    """

    __slots__ = ("__weakref__", "_flag", "_lot")

    def __init__(self) -> None:
        self._lot = ParkingLot()
        self._flag = False

    def __bool__(self) -> bool:
        # As in Trio: `if event:` is almost always a forgotten `.is_set()`.
        raise NotImplementedError(
            "Trio events cannot be treated as bools; consider using `event.is_set()` instead."
        )

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<nursery_io.Event object at {id(self):#x}, {state}>"

    def is_set(self) -> bool:
        """Whether :meth:`set` has been called."""
        return self._flag

    @enable_ki_protection
    def set(self) -> None:
        """Set the flag and wake every waiting task. Setting it again does nothing."""
        if not self._flag:
            self._flag = True
            self._lot.unpark_all()

    async def wait(self) -> None:
        """Wait until the flag is set; a checkpoint even if it is set already."""
        if self._flag:
            await checkpoint()
        else:
            await self._lot.park()

    def statistics(self) -> EventStatistics:
        """How many tasks are waiting."""
        return EventStatistics(tasks_waiting=len(self._lot))


# ----- CapacityLimiter -----


@dataclass(frozen=True)
class CapacityLimiterStatistics:
    """A snapshot of a :class:`CapacityLimiter`.

    ``borrowed_tokens``: tokens in use; ``total_tokens``: the limit; ``borrowers``: who
    holds the tokens (tasks, or whatever was passed to ``acquire_on_behalf_of``), in no
    particular order; ``tasks_waiting``: tasks blocked in an ``acquire``.
    """

    borrowed_tokens: int
    total_tokens: int | float
    borrowers: list[object]
    tasks_waiting: int


@final
class CapacityLimiter(_AsyncContextManagerMixin):
    """Limits how many tasks (or other "borrowers") may do something at the same time.

    Like a semaphore, but each borrower holds at most one token, and a token must be
    released by the borrower that acquired it — mistakes become loud ``RuntimeError``\\ s
    instead of silent leaks. ``total_tokens`` may be changed at any time (raising it wakes
    waiters at once; lowering it takes effect as tokens come back). Use it as
    ``async with limiter:``.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_borrowers",
        "_lot",
        "_pending_borrowers",
        "_total_tokens",
    )

    def __init__(self, total_tokens: int | float) -> None:
        self._lot = ParkingLot()
        self._borrowers: set[object] = set()
        # Waiting task -> the borrower it is acquiring for. When a token frees up, the
        # woken task's borrower is added to _borrowers *before* the task runs, so nobody
        # can take the token in between.
        self._pending_borrowers: dict[Task, object] = {}
        self._total_tokens: int | float = 1
        self.total_tokens = total_tokens

    def __repr__(self) -> str:
        return (
            f"<nursery_io.CapacityLimiter at {id(self):#x}, "
            f"{len(self._borrowers)}/{self._total_tokens} with {len(self._lot)} waiting>"
        )

    @property
    def total_tokens(self) -> int | float:
        """The number of tokens: an int >= 0, or ``math.inf`` for no limit. Assigning a
        larger value wakes waiters at once; a smaller one takes effect as tokens come back
        (0 pauses the limiter)."""
        return self._total_tokens

    @total_tokens.setter
    @enable_ki_protection
    def total_tokens(self, new_total_tokens: int | float) -> None:
        if not isinstance(new_total_tokens, int) and new_total_tokens != math.inf:
            raise TypeError("total_tokens must be an int or math.inf")
        # 0 is allowed, as in current Trio: it pauses the limiter until tokens are added.
        if new_total_tokens < 0:
            raise ValueError("total_tokens must be >= 0")
        self._total_tokens = new_total_tokens
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        available = self._total_tokens - len(self._borrowers)
        if available > 0 and self._lot:
            for woken in self._lot.unpark(count=available):
                self._borrowers.add(self._pending_borrowers.pop(woken))

    @property
    def borrowed_tokens(self) -> int:
        """How many tokens are currently held."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> int | float:
        """How many tokens are free right now."""
        return self._total_tokens - len(self._borrowers)

    def acquire_nowait(self) -> None:
        """Take a token for the current task without waiting.

        Raises ``WouldBlock`` if none is free (or others are already waiting for one) and
        ``RuntimeError`` if the task already holds one.
        """
        self.acquire_on_behalf_of_nowait(current_task())

    @enable_ki_protection
    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        """Take a token for ``borrower`` (any hashable object) without waiting.

        Raises ``WouldBlock`` if none is free and ``RuntimeError`` if ``borrower`` already
        holds one.
        """
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            )
        # Waiters go first: taking a free token while others wait would let newcomers
        # overtake them.
        if len(self._borrowers) < self._total_tokens and not self._lot:
            self._borrowers.add(borrower)
        else:
            raise WouldBlock

    async def acquire(self) -> None:
        """Take a token for the current task, waiting for one if necessary.

        A checkpoint even when a token is free. ``RuntimeError`` if the task already holds
        one.
        """
        await self.acquire_on_behalf_of(current_task())

    @enable_ki_protection
    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """Take a token for ``borrower``, waiting for one if necessary (FIFO).

        Lets a token be held by something other than the current task, for example a
        worker thread. ``RuntimeError`` if ``borrower`` already holds one.
        """
        await checkpoint_if_cancelled()
        try:
            self.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            task = current_task()
            self._pending_borrowers[task] = borrower
            try:
                await self._lot.park()
            except Cancelled:
                # Not woken, so the token was never assigned to us.
                self._pending_borrowers.pop(task)
                raise
        else:
            await cancel_shielded_checkpoint()

    def release(self) -> None:
        """Give back the current task's token. ``RuntimeError`` if it holds none."""
        self.release_on_behalf_of(current_task())

    @enable_ki_protection
    def release_on_behalf_of(self, borrower: object) -> None:
        """Give back ``borrower``'s token. ``RuntimeError`` if it holds none."""
        if borrower not in self._borrowers:
            raise RuntimeError("this borrower isn't holding any of this CapacityLimiter's tokens")
        self._borrowers.remove(borrower)
        self._wake_waiters()

    def statistics(self) -> CapacityLimiterStatistics:
        """A snapshot of tokens, borrowers and waiters."""
        return CapacityLimiterStatistics(
            borrowed_tokens=len(self._borrowers),
            total_tokens=self._total_tokens,
            borrowers=list(self._borrowers),
            tasks_waiting=len(self._lot),
        )


# ----- Semaphore -----


@final
class Semaphore(_AsyncContextManagerMixin):
    """A counter: ``acquire`` decrements it, waiting while it is zero; ``release``
    increments it.

    Anyone may release, not just a task that acquired (use :class:`CapacityLimiter` or
    :class:`Lock` when that matters). With ``max_value``, releasing past it raises
    ``ValueError`` — a cheap guard against unbalanced releases.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_lot", "_max_value", "_value")

    def __init__(self, initial_value: int, *, max_value: int | None = None) -> None:
        # The texts (typos included) are Trio's: users match on them.
        if not isinstance(initial_value, int):
            raise TypeError("initial_value must be an int")
        if initial_value < 0:
            raise ValueError("initial value must be >= 0")
        if max_value is not None:
            if not isinstance(max_value, int):
                raise TypeError("max_value must be None or an int")
            if max_value < initial_value:
                raise ValueError("max_values must be >= initial_value")
        self._lot = ParkingLot()
        self._value = initial_value
        self._max_value = max_value

    def __repr__(self) -> str:
        max_value = "" if self._max_value is None else f", max_value={self._max_value}"
        return f"<nursery_io.Semaphore({self._value}{max_value}) at {id(self):#x}>"

    @property
    def value(self) -> int:
        """The current count."""
        return self._value

    @property
    def max_value(self) -> int | None:
        """The upper bound given at construction, or None."""
        return self._max_value

    @enable_ki_protection
    def acquire_nowait(self) -> None:
        """Decrement without waiting; ``WouldBlock`` if the value is zero."""
        if self._value > 0:
            # Waiters only exist while the value is 0, so nobody is overtaken here.
            self._value -= 1
        else:
            raise WouldBlock

    @enable_ki_protection
    async def acquire(self) -> None:
        """Decrement, waiting while the value is zero (FIFO). Always a checkpoint."""
        await checkpoint_if_cancelled()
        try:
            self.acquire_nowait()
        except WouldBlock:
            # release() hands its increment straight to us instead of bumping _value.
            await self._lot.park()
        else:
            await cancel_shielded_checkpoint()

    @enable_ki_protection
    def release(self) -> None:
        """Increment, or wake the longest waiter. ``ValueError`` past ``max_value``."""
        if self._lot:
            self._lot.unpark(count=1)
        else:
            if self._max_value is not None and self._value == self._max_value:
                raise ValueError("semaphore released too many times")
            self._value += 1

    def statistics(self) -> ParkingLotStatistics:
        """How many tasks are waiting in ``acquire``."""
        return self._lot.statistics()


# ----- Lock, StrictFIFOLock -----


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of a lock: whether it is ``locked``, its ``owner`` task (or None), and
    how many tasks are waiting for it."""

    locked: bool
    owner: Task | None
    tasks_waiting: int


class _LockImpl(_AsyncContextManagerMixin):
    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_lot", "_owner")

    def __init__(self) -> None:
        self._lot = ParkingLot()
        self._owner: Task | None = None

    def __repr__(self) -> str:
        if self._owner is not None:
            state, waiters = "locked", f" with {len(self._lot)} waiters"
        else:
            state, waiters = "unlocked", ""
        return f"<{state} nursery_io.{type(self).__name__} object at {id(self):#x}{waiters}>"

    def locked(self) -> bool:
        """Whether some task holds the lock."""
        return self._owner is not None

    @enable_ki_protection
    def acquire_nowait(self) -> None:
        """Take the lock without waiting.

        ``WouldBlock`` if another task holds it (or tasks are queued for it);
        ``RuntimeError`` if the current task holds it already (locks are not reentrant).
        """
        task = current_task()
        if self._owner is None and not self._lot:
            self._owner = task
            # If we exit still holding it, waiters get BrokenResourceError, not a hang.
            add_parking_lot_breaker(task, self._lot)
        elif self._owner is task:
            # Trio's text, which says "Lock" for StrictFIFOLock too.
            raise RuntimeError("attempt to re-acquire an already held Lock")
        else:
            raise WouldBlock

    @enable_ki_protection
    async def acquire(self) -> None:
        """Take the lock, waiting (FIFO) if another task holds it. Always a checkpoint."""
        await checkpoint_if_cancelled()
        try:
            self.acquire_nowait()
        except WouldBlock:
            # release() makes us the owner before waking us.
            try:
                await self._lot.park()
            except BrokenResourceError:
                # The lot is broken when an owner exits while holding the lock.
                raise BrokenResourceError(
                    f"Owner of this lock exited without releasing: {self._owner}"
                ) from None
        else:
            await cancel_shielded_checkpoint()

    @enable_ki_protection
    def release(self) -> None:
        """Release the lock, handing it to the longest waiter if there is one.

        ``RuntimeError`` unless the current task holds it.
        """
        task = current_task()
        if task is not self._owner:
            raise RuntimeError("can't release a Lock you don't own")
        remove_parking_lot_breaker(task, self._lot)
        if self._lot:
            (self._owner,) = self._lot.unpark(count=1)
            add_parking_lot_breaker(self._owner, self._lot)
        else:
            self._owner = None

    def statistics(self) -> LockStatistics:
        """Whether it is locked, by whom, and how many tasks wait."""
        return LockStatistics(
            locked=self._owner is not None, owner=self._owner, tasks_waiting=len(self._lot)
        )


@final
class Lock(_LockImpl):
    """A mutual-exclusion lock, owned by the task that acquired it.

    Not reentrant. Only the owner may release it. Fair: when released it goes to the task
    that has waited longest. Use it as ``async with lock:``.
    """

    __slots__ = ()


@final
class StrictFIFOLock(_LockImpl):
    """A :class:`Lock` that *promises* strict first-come first-served ordering.

    :class:`Lock` happens to be FIFO today, but only this class guarantees it — use it
    when correctness depends on the order, e.g. to keep the chunks of concurrent
    ``send_all`` calls in the order the calls were made.
    """

    __slots__ = ()


# ----- Condition -----


@dataclass(frozen=True)
class ConditionStatistics:
    """``tasks_waiting``: tasks blocked in :meth:`Condition.wait`; ``lock_statistics``:
    the statistics of the underlying lock."""

    tasks_waiting: int
    lock_statistics: LockStatistics


@final
class Condition(_AsyncContextManagerMixin):
    """Lets tasks wait for a notification while releasing a :class:`Lock`.

    ``lock`` defaults to a new :class:`Lock`; it must be a plain :class:`Lock`. Waiters are
    notified in FIFO order, and a notified waiter gets the lock back before :meth:`wait`
    returns.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_lock", "_lot")

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        if type(lock) is not Lock:
            raise TypeError("lock must be a nursery_io.Lock")
        self._lock = lock
        self._lot = ParkingLot()

    def locked(self) -> bool:
        """Whether the underlying lock is held."""
        return self._lock.locked()

    def acquire_nowait(self) -> None:
        """Take the underlying lock without waiting (see :meth:`Lock.acquire_nowait`)."""
        return self._lock.acquire_nowait()

    async def acquire(self) -> None:
        """Take the underlying lock (see :meth:`Lock.acquire`)."""
        await self._lock.acquire()

    def release(self) -> None:
        """Release the underlying lock (see :meth:`Lock.release`)."""
        self._lock.release()

    @enable_ki_protection
    async def wait(self) -> None:
        """Release the lock, wait for a notification, then take the lock back.

        The current task must hold the lock (``RuntimeError`` otherwise). Whatever happens
        — even cancellation — the lock is held again when this returns or raises.
        """
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to wait")
        self.release()
        # We park in our own lot, but notify() moves us into the lock's lot, and the lock's
        # release() then makes us the owner before waking us: so a normal wake-up means we
        # already hold the lock again.
        try:
            await self._lot.park()
        except BaseException:
            # Cancelled (or interrupted) while waiting, in either lot: we don't hold the
            # lock, and callers rely on holding it whatever happens.
            with CancelScope(shield=True):
                await self.acquire()
            raise

    @enable_ki_protection
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (the longest waiting first). Requires holding the lock.

        They don't run until they can take the lock, i.e. after the caller releases it.
        """
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to notify")
        self._lot.repark(self._lock._lot, count=n)

    @enable_ki_protection
    def notify_all(self) -> None:
        """Wake every waiter. Requires holding the lock."""
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to notify")
        self._lot.repark_all(self._lock._lot)

    def statistics(self) -> ConditionStatistics:
        """Waiters on the condition, plus the lock's statistics."""
        return ConditionStatistics(
            tasks_waiting=len(self._lot), lock_statistics=self._lock.statistics()
        )
