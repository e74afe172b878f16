"""``as_safe_channel``: an async generator run as a background task behind a channel.

Iterating an async generator directly runs its body in the consumer's task, in between the
consumer's own code: a cancel scope or nursery opened inside the generator then spans
``yield``s into code it knows nothing about, and its cleanup runs whenever the garbage
collector gets to it. Here the generator runs in a task of its own, inside a nursery that
the ``async with`` block owns, and hands each value over a channel. It is advanced only
on demand, one value per ``receive()``, so it never runs ahead of the consumer, and it is
finished (cancelled, its ``finally`` blocks run) before the ``async with`` block exits.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Generic, ParamSpec, TypeVar

import outcome

from ._channel import MemoryReceiveChannel, MemorySendChannel, open_memory_channel
from ._core import Cancelled, ClosedResourceError, Nursery, open_nursery
from ._core._nursery import NurseryManager
from .abc import ReceiveChannel
from .lowlevel import ParkingLot, checkpoint

__all__ = ["as_safe_channel"]

T = TypeVar("T")
P = ParamSpec("P")


class _GeneratorChannel(ReceiveChannel[T]):
    """The receiving end handed to the ``async with`` body."""

    __slots__ = ("_closed", "_demand", "_lot", "_values")

    def __init__(self, values: MemoryReceiveChannel[outcome.Outcome[T]]) -> None:
        self._values = values
        self._demand = False  # a receive() is waiting for the generator's next value
        self._lot = ParkingLot()  # where the pump waits for demand
        self._closed = False

    async def receive(self) -> T:
        if self._closed:
            await checkpoint()
            raise ClosedResourceError("this channel was closed")
        self._demand = True
        self._lot.unpark_all()
        # A receive cancelled here leaves the demand standing: the value the generator
        # produces for it is not lost, the next receive() gets it.
        result = await self._values.receive()
        return result.unwrap()

    async def aclose(self) -> None:
        self._closed = True
        await self._values.aclose()

    async def _wait_for_demand(self) -> None:
        while not self._demand:
            await self._lot.park()
        self._demand = False


async def _pump(
    agen: AsyncGenerator[T, None],
    channel: _GeneratorChannel[T],
    send: MemorySendChannel[outcome.Outcome[T]],
) -> None:
    async with send:
        try:
            while True:
                await channel._wait_for_demand()
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    return  # closing `send` ends the consumer's iteration
                except Cancelled:
                    raise
                except BaseException as exc:
                    # The generator failed: the consumer's receive() raises it (plainly,
                    # not wrapped in this nursery's exception group).
                    await send.send(outcome.Error(exc))
                    return
                await send.send(outcome.Value(value))
        finally:
            # Runs its finally blocks now, in this task (a no-op if it never started).
            await agen.aclose()


class _SafeChannelManager(Generic[T]):
    __slots__ = ("_agen", "_channel", "_manager", "_nursery")

    def __init__(self, agen: AsyncGenerator[T, None]) -> None:
        self._agen = agen
        self._manager: NurseryManager | None = None
        self._nursery: Nursery | None = None
        self._channel: _GeneratorChannel[T] | None = None

    async def __aenter__(self) -> ReceiveChannel[T]:
        if self._manager is not None:
            raise RuntimeError("this as_safe_channel context manager was already entered")
        send, receive = open_memory_channel[outcome.Outcome[T]](0)
        channel = _GeneratorChannel(receive)
        self._channel = channel
        self._manager = manager = open_nursery()
        nursery = await manager.__aenter__()
        self._nursery = nursery
        name = getattr(self._agen, "__qualname__", None)
        nursery.start_soon(_pump, self._agen, channel, send, name=name)
        return channel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._manager is not None and self._nursery is not None
        assert self._channel is not None
        self._nursery.cancel_scope.cancel()
        # The body's own exception is not given to the nursery: it would come back wrapped
        # in an exception group. The nursery only waits for the pump, which reports the
        # generator's failures through the channel and ends in its own cancellation.
        try:
            await self._manager.__aexit__(None, None, None)
        finally:
            await self._channel.aclose()
        return False


def as_safe_channel(
    fn: Callable[P, AsyncGenerator[T, None]],
) -> Callable[P, _SafeChannelManager[T]]:
    """Decorator: turn an async generator function into one that returns an async context
    manager, whose ``async with`` block gets a :class:`~nursery_io.abc.ReceiveChannel` of
    the generated values::

        @nursery_io.as_safe_channel
        async def ticks(count):
            for i in range(count):
                await nursery_io.sleep(1)
                yield i

        async with ticks(3) as channel:
            async for tick in channel:
                print(tick)

    The generator runs in a background task owned by the block, so cancel scopes and
    nurseries inside it stay properly nested. It is advanced one value per ``receive()``
    (it doesn't run ahead of the consumer, and doesn't start until the first receive). An
    exception it raises comes out of the ``receive()`` that asked for the value. Leaving
    the block cancels the generator if it is still running and runs its ``finally``
    blocks before the block exits; the channel is closed afterwards.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> _SafeChannelManager[T]:
        return _SafeChannelManager(fn(*args, **kwargs))

    return wrapper
