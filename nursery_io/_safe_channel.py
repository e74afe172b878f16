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
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import NoReturn, ParamSpec, TypeVar

from ._channel import MemoryReceiveChannel, MemorySendChannel, open_memory_channel
from ._core import TASK_STATUS_IGNORED, BrokenResourceError, Cancelled, TaskStatus, open_nursery
from ._sync import Semaphore
from .abc import ReceiveChannel

__all__ = ["as_safe_channel"]

T = TypeVar("T")
P = ParamSpec("P")


class _GeneratorChannel(ReceiveChannel[T]):
    """The receiving end handed to the ``async with`` body."""

    __slots__ = ("_demand", "_values")

    def __init__(self, values: MemoryReceiveChannel[T], demand: Semaphore) -> None:
        self._values = values
        # One token per receive() that asked for a value. A receive cancelled while
        # waiting leaves its token: the value the generator makes for it goes to the next.
        self._demand = demand

    async def receive(self) -> T:
        self._demand.release()
        return await self._values.receive()

    async def aclose(self) -> None:
        await self._values.aclose()


async def _close_generator(agen: AsyncGenerator[T, None]) -> None:
    """``agen.aclose()``, also accepting the ``GeneratorExit`` that a nursery inside the
    generator hands back wrapped in an exception group (plain ``aclose()`` re-raises it)."""
    try:
        await agen.aclose()
    except BaseExceptionGroup as group:
        exits, others = group.split(GeneratorExit)
        exit_count = _count_leaves(exits)
        if exit_count > 1:
            # Only one GeneratorExit was thrown in: extras were raised by user code.
            extra = AssertionError("More than one GeneratorExit found.")
            others = (
                group.derive([extra])
                if others is None
                else others.derive([*others.exceptions, extra])
            )
        if others is not None:
            raise others from None


def _count_leaves(group: BaseException | None) -> int:
    if group is None:
        return 0
    if isinstance(group, BaseExceptionGroup):
        return sum(_count_leaves(inner) for inner in group.exceptions)
    return 1


async def _pump(
    agen: AsyncGenerator[T, None],
    send: MemorySendChannel[T],
    demand: Semaphore,
    *,
    task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
) -> None:
    # A plain `with`: `async with` would checkpoint on exit, and could replace the
    # generator's exception with a Cancelled.
    with send:
        try:
            task_status.started()
            while True:
                await demand.acquire()
                if not send.statistics().open_receive_channels:
                    break  # nobody can take the value: don't make the generator compute it
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    return  # closing `send` ends the consumer's iteration
                try:
                    await send.send(value)
                except BrokenResourceError:
                    break  # the channel was closed while the value was being computed
        finally:
            # Runs its finally blocks now, in this task (a no-op if it never started).
            await _close_generator(agen)


def _raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one meaningful exception of the nursery's group, unwrapped (Cancelled
    only if nothing else is there); more than one raises MultipleErrors."""
    for exc in group.exceptions:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise type(exc)(*exc.args) from group
    first_cancelled: BaseException | None = None
    chosen: BaseException | None = None
    for exc in group.exceptions:
        if isinstance(exc, Cancelled):
            first_cancelled = first_cancelled or exc
        elif chosen is None:
            chosen = exc
        else:
            raise _MultipleErrors
    chosen = chosen or first_cancelled
    assert chosen is not None  # an exception group is never empty
    # Raising inside the handler would make the group the exception's __context__.
    saved_context = chosen.__context__
    try:
        raise chosen
    finally:
        chosen.__context__ = saved_context


class _MultipleErrors(Exception):
    pass


_UNWRAP_NOTE = (
    "Encountered exception during cleanup of generator object, as "
    "well as exception in the contextmanager body - unable to unwrap."
)


@asynccontextmanager
async def _safe_channel(agen: AsyncGenerator[T, None]) -> AsyncGenerator[ReceiveChannel[T], None]:
    send, receive = open_memory_channel[T](0)
    try:
        async with open_nursery(strict_exception_groups=True) as nursery:
            demand = Semaphore(0)
            # start(), not start_soon(): once the block is entered the pump is running, and
            # its `finally` is sure to close the generator.
            await nursery.start(_pump, agen, send, demand)
            with receive:
                yield _GeneratorChannel(receive, demand)
            nursery.cancel_scope.cancel("exited the as_safe_channel block")
    except BaseExceptionGroup as group:
        try:
            _raise_single(group)
        except _MultipleErrors:
            group.add_note(_UNWRAP_NOTE)
            raise group from None


class _SafeChannelManager(AbstractAsyncContextManager[ReceiveChannel[T]]):
    __slots__ = ("_agen", "_manager")

    def __init__(self, agen: AsyncGenerator[T, None]) -> None:
        self._agen = agen
        self._manager: AbstractAsyncContextManager[ReceiveChannel[T]] | None = None

    async def __aenter__(self) -> ReceiveChannel[T]:
        if self._manager is not None:
            raise RuntimeError("this as_safe_channel context manager was already entered")
        self._manager = _safe_channel(self._agen)
        return await self._manager.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._manager is not None
        return await self._manager.__aexit__(exc_type, exc, tb)


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
    exception it raises cancels the block and comes out of the ``async with``, unwrapped;
    if the block failed too, both come out together in an exception group. Leaving the
    block closes the channel, cancels the generator if it is still running and runs its
    ``finally`` blocks before the block exits.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> _SafeChannelManager[T]:
        return _SafeChannelManager(fn(*args, **kwargs))

    return wrapper
