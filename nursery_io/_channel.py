"""Memory channels: pass Python objects between tasks of one run, with backpressure.

Design notes (this is a hot path):

* All the clones of a channel share one :class:`_ChannelState`: the buffer, the counts of
  open ends and two FIFO queues of parked tasks (dicts: insertion-ordered, O(1) removal
  for cancellation). Each endpoint also remembers which of the parked tasks are its own, so
  closing one clone wakes exactly the tasks blocked on that clone.
* A value is never lost or duplicated by cancellation. A sender that finds a parked
  receiver hands the value over *and* reschedules the receiver in one step; from then on
  the receiver can no longer be cancelled out of its wait, so it will return the value. A
  parked sender's value sits in ``send_tasks`` until a receiver takes it (and wakes the
  sender) or the sender's abort function removes it (and the sender gets ``Cancelled``).
  After a successful operation the only schedule point left is cancel-shielded.
* The hand-off to a parked receiver goes through ``_ChannelState.delivered`` and a bare
  ``reschedule(task)`` rather than ``reschedule(task, outcome.Value(value))``: a dict
  store and pop cost far less than building and unwrapping an Outcome per message.
* ``send``/``receive`` inline their ``*_nowait`` logic instead of calling it and catching
  ``WouldBlock``: raising an exception per blocking operation is the most expensive thing
  the old design did.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from outcome import Error

from ._core import (
    Abort,
    BrokenResourceError,
    ClosedResourceError,
    EndOfChannel,
    RaiseCancelT,
    Task,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)
from ._core._util import ClosesOnExit, final
from .abc import ReceiveChannel, SendChannel

if TYPE_CHECKING:
    pass

__all__ = [
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "open_memory_channel",
]

T = TypeVar("T")
SendType = TypeVar("SendType")
ReceiveType = TypeVar("ReceiveType")


@dataclass(frozen=True)
class MemoryChannelStatistics:
    """A snapshot of a memory channel (shared by all its clones).

    ``current_buffer_used``: items in the buffer; ``max_buffer_size``: as passed to
    :func:`open_memory_channel`; ``open_send_channels`` / ``open_receive_channels``: ends
    not yet closed, clones included; ``tasks_waiting_send`` / ``tasks_waiting_receive``:
    tasks blocked in ``send`` / ``receive`` on any clone; ``peak_buffer_used``: the most
    items the buffer has held at once.
    """

    current_buffer_used: int
    max_buffer_size: int | float
    open_send_channels: int
    open_receive_channels: int
    tasks_waiting_send: int
    tasks_waiting_receive: int
    peak_buffer_used: int


class _ChannelState(Generic[T]):
    __slots__ = (
        "data",
        "delivered",
        "max_buffer_size",
        "open_receive_channels",
        "open_send_channels",
        "peak_buffer_used",
        "receive_tasks",
        "send_tasks",
    )

    def __init__(self, max_buffer_size: int | float) -> None:
        self.max_buffer_size = max_buffer_size
        self.data: deque[T] = deque()
        self.open_send_channels = 0
        self.open_receive_channels = 0
        # Parked senders -> the value each one is sending, oldest first.
        self.send_tasks: dict[Task, T] = {}
        # Parked receivers, oldest first (the dict is used as an ordered set).
        self.receive_tasks: dict[Task, None] = {}
        # Values handed to receivers that were rescheduled but haven't run yet.
        self.delivered: dict[Task, T] = {}
        self.peak_buffer_used = 0

    def statistics(self) -> MemoryChannelStatistics:
        return MemoryChannelStatistics(
            current_buffer_used=len(self.data),
            max_buffer_size=self.max_buffer_size,
            open_send_channels=self.open_send_channels,
            open_receive_channels=self.open_receive_channels,
            tasks_waiting_send=len(self.send_tasks),
            tasks_waiting_receive=len(self.receive_tasks),
            peak_buffer_used=self.peak_buffer_used,
        )


def _no_public_constructor(cls: type) -> NoReturn:
    raise TypeError(f"nursery_io.{cls.__name__} has no public constructor")


@final
class MemorySendChannel(SendChannel[SendType], ClosesOnExit):
    """The sending end of a memory channel, from :func:`open_memory_channel`.

    Besides the :class:`~nursery_io.abc.SendChannel` interface it has ``send_nowait``,
    ``clone``, a synchronous ``close`` (and ``with`` support) and ``statistics``.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_closed", "_state", "_tasks")

    _state: _ChannelState[SendType]
    _closed: bool
    _tasks: set[Task]

    def __init__(self, *args: object, **kwargs: object) -> None:
        _no_public_constructor(type(self))

    @classmethod
    def _create(cls, state: _ChannelState[SendType]) -> MemorySendChannel[SendType]:
        self = cls.__new__(cls)
        self._state = state
        self._closed = False
        # The tasks parked in send() on *this* end (state.send_tasks has every clone's).
        self._tasks = set()
        state.open_send_channels += 1
        return self

    def __repr__(self) -> str:
        return f"<send channel at {id(self):#x}, using buffer at {id(self._state):#x}>"

    def statistics(self) -> MemoryChannelStatistics:
        """A snapshot of the channel's state (see :class:`MemoryChannelStatistics`)."""
        return self._state.statistics()

    @enable_ki_protection
    def send_nowait(self, value: SendType) -> None:
        """Send ``value`` if that is possible without waiting, else raise ``WouldBlock``.

        Raises ``ClosedResourceError`` if this end is closed and ``BrokenResourceError``
        if every receiving end is closed.
        """
        if self._closed:
            raise ClosedResourceError()
        state = self._state
        if not state.open_receive_channels:
            raise BrokenResourceError()
        receive_tasks = state.receive_tasks
        if receive_tasks:
            task = next(iter(receive_tasks))
            del receive_tasks[task]
            task.custom_sleep_data._tasks.remove(task)
            state.delivered[task] = value
            reschedule(task)
        elif len(state.data) < state.max_buffer_size:
            state.data.append(value)
            state.peak_buffer_used = max(state.peak_buffer_used, len(state.data))
        else:
            raise WouldBlock

    @enable_ki_protection
    async def send(self, value: SendType) -> None:
        """Send ``value``, waiting while the buffer is full and nobody is receiving.

        A checkpoint. Either the value is sent, or (on cancellation or error) the channel
        is left exactly as it was. Raises ``ClosedResourceError`` if this end is closed
        (also while waiting) and ``BrokenResourceError`` if every receiving end is closed
        (also while waiting).
        """
        await checkpoint_if_cancelled()
        if self._closed:
            raise ClosedResourceError()
        state = self._state
        if not state.open_receive_channels:
            raise BrokenResourceError()
        receive_tasks = state.receive_tasks
        if receive_tasks:
            # Fast path: a receiver is parked; give it the value directly.
            task = next(iter(receive_tasks))
            del receive_tasks[task]
            task.custom_sleep_data._tasks.remove(task)
            state.delivered[task] = value
            reschedule(task)
            await cancel_shielded_checkpoint()
            return
        data = state.data
        if len(data) < state.max_buffer_size:
            data.append(value)
            state.peak_buffer_used = max(state.peak_buffer_used, len(data))
            await cancel_shielded_checkpoint()
            return

        task = current_task()
        tasks = self._tasks
        send_tasks = state.send_tasks
        tasks.add(task)
        send_tasks[task] = value
        task.custom_sleep_data = self

        def abort(_: RaiseCancelT) -> Abort:
            # Still parked, so no receiver has taken the value: withdraw it.
            tasks.remove(task)
            del send_tasks[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    @enable_ki_protection
    def clone(self) -> MemorySendChannel[SendType]:
        """Return a new sending end for the same channel.

        Each clone is closed independently; receivers see the end of the channel only
        once *every* sending end is closed. Raises ``ClosedResourceError`` if this end is
        closed.
        """
        if self._closed:
            raise ClosedResourceError()
        return MemorySendChannel._create(self._state)

    @enable_ki_protection
    def close(self) -> None:
        """Close this end (idempotent, synchronous).

        Tasks blocked in ``send`` on this end get ``ClosedResourceError``. If it was the
        last open sending end, receivers get ``EndOfChannel`` once the buffer is drained.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        for task in self._tasks:
            del state.send_tasks[task]
            reschedule(task, Error(ClosedResourceError()))
        self._tasks.clear()
        state.open_send_channels -= 1
        if state.open_send_channels == 0:
            # Receivers only park on an empty buffer, so nothing is left for them.
            assert not state.send_tasks
            for task in state.receive_tasks:
                task.custom_sleep_data._tasks.remove(task)
                reschedule(task, Error(EndOfChannel()))
            state.receive_tasks.clear()

    @enable_ki_protection
    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()


@final
class MemoryReceiveChannel(ReceiveChannel[ReceiveType], ClosesOnExit):
    """The receiving end of a memory channel, from :func:`open_memory_channel`.

    Besides the :class:`~nursery_io.abc.ReceiveChannel` interface (including ``async
    for``) it has ``receive_nowait``, ``clone``, a synchronous ``close`` (and ``with``
    support) and ``statistics``.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_closed", "_state", "_tasks")

    _state: _ChannelState[ReceiveType]
    _closed: bool
    _tasks: set[Task]

    def __init__(self, *args: object, **kwargs: object) -> None:
        _no_public_constructor(type(self))

    @classmethod
    def _create(cls, state: _ChannelState[ReceiveType]) -> MemoryReceiveChannel[ReceiveType]:
        self = cls.__new__(cls)
        self._state = state
        self._closed = False
        self._tasks = set()
        state.open_receive_channels += 1
        return self

    def __repr__(self) -> str:
        return f"<receive channel at {id(self):#x}, using buffer at {id(self._state):#x}>"

    def statistics(self) -> MemoryChannelStatistics:
        """A snapshot of the channel's state (see :class:`MemoryChannelStatistics`)."""
        return self._state.statistics()

    @enable_ki_protection
    def receive_nowait(self) -> ReceiveType:
        """Return the next value if one is available without waiting, else raise
        ``WouldBlock``.

        Raises ``EndOfChannel`` if every sending end is closed and the buffer is empty,
        ``ClosedResourceError`` if this end is closed.
        """
        if self._closed:
            raise ClosedResourceError()
        state = self._state
        send_tasks = state.send_tasks
        if send_tasks:
            return self._take_from_sender(state, send_tasks)
        if state.data:
            return state.data.popleft()
        if not state.open_send_channels:
            raise EndOfChannel
        raise WouldBlock

    @staticmethod
    def _take_from_sender(
        state: _ChannelState[ReceiveType], send_tasks: dict[Task, ReceiveType]
    ) -> ReceiveType:
        # A parked sender exists only while the buffer is full; its value joins the tail
        # and we take the head, which keeps FIFO order (with no buffer, the two coincide).
        task = next(iter(send_tasks))
        value = send_tasks.pop(task)
        task.custom_sleep_data._tasks.remove(task)
        reschedule(task)
        data = state.data
        if data:
            data.append(value)
            return data.popleft()
        return value

    @enable_ki_protection
    async def receive(self) -> ReceiveType:
        """Wait for the next value and return it.

        A checkpoint. Either a value is returned, or (on cancellation or error) the
        channel is left exactly as it was. Raises ``EndOfChannel`` once every sending end
        is closed and the buffer is drained, ``ClosedResourceError`` if this end is closed
        (also while waiting).
        """
        await checkpoint_if_cancelled()
        if self._closed:
            raise ClosedResourceError()
        state = self._state
        send_tasks = state.send_tasks
        if send_tasks:
            value = self._take_from_sender(state, send_tasks)
            await cancel_shielded_checkpoint()
            return value
        if state.data:
            value = state.data.popleft()
            await cancel_shielded_checkpoint()
            return value
        if not state.open_send_channels:
            raise EndOfChannel

        task = current_task()
        tasks = self._tasks
        receive_tasks = state.receive_tasks
        tasks.add(task)
        receive_tasks[task] = None
        task.custom_sleep_data = self

        def abort(_: RaiseCancelT) -> Abort:
            # Still parked, so no sender has handed us anything yet.
            tasks.remove(task)
            del receive_tasks[task]
            return Abort.SUCCEEDED

        # Woken by a sender (value in `delivered`) or by close() (raises).
        await wait_task_rescheduled(abort)
        return state.delivered.pop(task)

    @enable_ki_protection
    def clone(self) -> MemoryReceiveChannel[ReceiveType]:
        """Return a new receiving end for the same channel.

        Clones share the values: each value goes to exactly one receiver. Each clone is
        closed independently; senders see ``BrokenResourceError`` only once *every*
        receiving end is closed. Raises ``ClosedResourceError`` if this end is closed.
        """
        if self._closed:
            raise ClosedResourceError()
        return MemoryReceiveChannel._create(self._state)

    @enable_ki_protection
    def close(self) -> None:
        """Close this end (idempotent, synchronous).

        Tasks blocked in ``receive`` on this end get ``ClosedResourceError``. If it was the
        last open receiving end, the buffered values are discarded and senders (waiting
        now or later) get ``BrokenResourceError``.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        for task in self._tasks:
            del state.receive_tasks[task]
            reschedule(task, Error(ClosedResourceError()))
        self._tasks.clear()
        state.open_receive_channels -= 1
        if state.open_receive_channels == 0:
            # Senders only park when no receiver is parked, so none are left to wake.
            assert not state.receive_tasks
            for task in state.send_tasks:
                task.custom_sleep_data._tasks.remove(task)
                reschedule(
                    task,
                    Error(BrokenResourceError()),
                )
            state.send_tasks.clear()
            state.data.clear()

    @enable_ki_protection
    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()


def _open(max_buffer_size: int | float) -> tuple[MemorySendChannel[Any], MemoryReceiveChannel[Any]]:
    if max_buffer_size != math.inf and not isinstance(max_buffer_size, int):
        raise TypeError("max_buffer_size must be an integer or math.inf")
    if max_buffer_size < 0:
        raise ValueError("max_buffer_size must be >= 0")
    state: _ChannelState[Any] = _ChannelState(max_buffer_size)
    return MemorySendChannel._create(state), MemoryReceiveChannel._create(state)


# A class rather than a function so that ``open_memory_channel[int](0)`` spells the item
# type for type checkers, the way it does in Trio; calling it returns a plain tuple.
@final
class open_memory_channel(tuple["MemorySendChannel[T]", "MemoryReceiveChannel[T]"]):
    """Create an in-memory channel and return its ``(send_channel, receive_channel)``.

    Values pass directly between tasks of the same run, without copying or serializing.
    ``max_buffer_size`` is how many values may wait in the channel before ``send``
    blocks: ``0`` (the default choice: every ``send`` waits for a ``receive``, so
    backpressure is immediate), a positive int, or ``math.inf`` (never block; use with
    care). Ends are closed with ``close``/``aclose`` (or ``with``/``async with``), and
    ``clone`` makes more ends for fan-in and fan-out. Values come out in the order they
    went in, and tasks blocked on a channel are served first come, first served.
    """

    def __new__(  # type: ignore[misc]
        cls, max_buffer_size: int | float
    ) -> tuple[MemorySendChannel[T], MemoryReceiveChannel[T]]:
        return _open(max_buffer_size)

    def __init__(self, max_buffer_size: int | float) -> None:  # pragma: no cover - typing only
        ...
