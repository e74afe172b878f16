"""In-memory streams for testing protocol code without sockets.

Two families:

* *Buffered* (:class:`MemorySendStream`, :class:`MemoryReceiveStream` and the pairs built
  from them): unbounded buffers plus hooks that run on every operation, so a test can
  decide exactly when and how much data moves from one side to the other — for example to
  deliver a message one byte at a time, or not at all.
* *Lockstep* (:func:`lockstep_stream_pair`): no buffer at all. ``send_all`` returns only
  once the receiver has taken every byte, which flushes out code that accidentally relies
  on the transport buffering data.

Both detect two tasks using the same side at once and raise
:class:`~nursery_io.BusyResourceError`, like real streams do.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from types import TracebackType

from .._core import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    ParkingLot,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)
from .._core._util import final
from .._highlevel_generic import StapledStream
from ..abc import ReceiveStream, SendStream

__all__ = [
    "MemoryReceiveStream",
    "MemorySendStream",
    "lockstep_stream_one_way_pair",
    "lockstep_stream_pair",
    "memory_stream_one_way_pair",
    "memory_stream_pair",
    "memory_stream_pump",
]

AsyncHook = Callable[[], Awaitable[object]]
SyncHook = Callable[[], object]


class _ConflictDetector:
    """``with detector:`` marks an operation as in progress; entering it while another
    task is inside raises :class:`BusyResourceError`.

    Tasks of one run never truly run in parallel, so a plain flag is enough: the
    operations it guards are the ones that may sleep in the middle.
    """

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise BusyResourceError(self._message)
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._held = False


def _check_max_bytes(max_bytes: int | None) -> int | None:
    if max_bytes is None:
        return None
    max_bytes = operator.index(max_bytes)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
    return max_bytes


class _ByteQueue:
    """An unbounded byte buffer with one blocking reader and an end-of-data flag."""

    __slots__ = ("_closed", "_data", "_getter", "_lot")

    def __init__(self) -> None:
        self._data = bytearray()
        self._closed = False
        self._lot = ParkingLot()
        self._getter = _ConflictDetector("another task is already fetching data")

    def put(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ClosedResourceError("virtual connection closed")
        self._data += data
        self._lot.unpark_all()

    def close(self) -> None:
        """No more data will come; the reader gets what is left, then empty chunks."""
        self._closed = True
        self._lot.unpark_all()

    def close_and_wipe(self) -> None:
        self._data = bytearray()
        self.close()

    def _take(self, max_bytes: int | None) -> bytearray:
        if max_bytes is None:
            max_bytes = len(self._data)
        chunk = self._data[:max_bytes]
        del self._data[:max_bytes]
        return chunk

    def get_nowait(self, max_bytes: int | None = None) -> bytearray:
        with self._getter:
            max_bytes = _check_max_bytes(max_bytes)
            if not self._closed and not self._data:
                raise WouldBlock
            return self._take(max_bytes)

    async def get(self, max_bytes: int | None = None) -> bytearray:
        with self._getter:
            max_bytes = _check_max_bytes(max_bytes)
            await checkpoint_if_cancelled()
            if not self._closed and not self._data:
                # Every put() and close() wakes us, and we are the only reader.
                await self._lot.park()
            else:
                await cancel_shielded_checkpoint()
            return self._take(max_bytes)


@final
class MemorySendStream(SendStream):
    """A :class:`~nursery_io.abc.SendStream` that appends everything sent to a buffer,
    which the test reads with :meth:`get_data` / :meth:`get_data_nowait`.

    Hooks (also settable attributes, changeable at any time): ``send_all_hook`` (async,
    awaited at the end of every ``send_all``), ``wait_send_all_might_not_block_hook``
    (async, awaited by ``wait_send_all_might_not_block``) and ``close_hook`` (sync, called
    by ``close``/``aclose``). Without hooks, sending never blocks.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",  # weak-referenceable, as in Trio
        "_busy",
        "_outgoing",
        "close_hook",
        "send_all_hook",
        "wait_send_all_might_not_block_hook",
    )

    def __init__(
        self,
        send_all_hook: AsyncHook | None = None,
        wait_send_all_might_not_block_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._busy = _ConflictDetector("another task is using this stream")
        self._outgoing = _ByteQueue()
        self.send_all_hook = send_all_hook
        self.wait_send_all_might_not_block_hook = wait_send_all_might_not_block_hook
        self.close_hook = close_hook

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the buffer, then await ``send_all_hook`` (if set)."""
        with self._busy:
            # Checkpoint before buffering: a cancelled call leaves nothing behind. Two
            # of them give an overlapping caller more chances to hit the detector.
            await checkpoint()
            await checkpoint()
            self._outgoing.put(data)
            if self.send_all_hook is not None:
                await self.send_all_hook()

    async def wait_send_all_might_not_block(self) -> None:
        """Await ``wait_send_all_might_not_block_hook`` (if set); otherwise return at
        once (after a checkpoint)."""
        with self._busy:
            await checkpoint()
            await checkpoint()
            # An empty put() does nothing but raise if we are closed.
            self._outgoing.put(b"")
            if self.wait_send_all_might_not_block_hook is not None:
                await self.wait_send_all_might_not_block_hook()

    def close(self) -> None:
        """Mark the stream closed (``get_data`` then returns empty once drained) and call
        ``close_hook`` (if set)."""
        self._outgoing.close()
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()

    async def get_data(self, max_bytes: int | None = None) -> bytearray:
        """Take up to ``max_bytes`` (default: everything) from the buffer, waiting until
        there is at least one byte. Returns an empty bytearray once the stream is closed
        and drained. ``BusyResourceError`` if another task is already fetching."""
        return await self._outgoing.get(max_bytes)

    def get_data_nowait(self, max_bytes: int | None = None) -> bytearray:
        """Like :meth:`get_data`, but raise ``WouldBlock`` instead of waiting."""
        return self._outgoing.get_nowait(max_bytes)


@final
class MemoryReceiveStream(ReceiveStream):
    """A :class:`~nursery_io.abc.ReceiveStream` that returns whatever the test feeds it
    with :meth:`put_data`, and the end of the stream after :meth:`put_eof`.

    Hooks (also settable attributes): ``receive_some_hook`` (async, awaited at the start
    of every ``receive_some``, before waiting for data) and ``close_hook`` (sync, called by
    ``close``/``aclose``).
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_busy",
        "_closed",
        "_incoming",
        "close_hook",
        "receive_some_hook",
    )

    def __init__(
        self,
        receive_some_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._busy = _ConflictDetector("another task is using this stream")
        self._incoming = _ByteQueue()
        self._closed = False
        self.receive_some_hook = receive_some_hook
        self.close_hook = close_hook

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        """Await ``receive_some_hook`` (if set), then return up to ``max_bytes`` from the
        buffer, waiting for data if it is empty. Returns empty after ``put_eof``."""
        with self._busy:
            await checkpoint()
            await checkpoint()
            if self._closed:
                raise ClosedResourceError("this stream was closed")
            if self.receive_some_hook is not None:
                await self.receive_some_hook()
            data = await self._incoming.get(max_bytes)
            # close() wakes a blocked get() by ending the queue; tell that apart from a
            # genuine end of stream.
            if self._closed:
                raise ClosedResourceError("this stream was closed")
            return data

    def close(self) -> None:
        """Close the stream: discard buffered data, make pending and future
        ``receive_some`` calls raise ``ClosedResourceError``, call ``close_hook``."""
        self._closed = True
        self._incoming.close_and_wipe()
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()

    def put_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to the buffer for ``receive_some`` to return.

        ``ClosedResourceError`` after :meth:`put_eof` or :meth:`close`."""
        self._incoming.put(data)

    def put_eof(self) -> None:
        """End the stream: once the buffer is drained, ``receive_some`` returns empty."""
        self._incoming.close()


def memory_stream_pump(
    memory_send_stream: MemorySendStream,
    memory_receive_stream: MemoryReceiveStream,
    *,
    max_bytes: int | None = None,
) -> bool:
    """Move up to ``max_bytes`` (default: all) of the data buffered in
    ``memory_send_stream`` into ``memory_receive_stream``; if the send stream is closed
    and drained, pass the end of stream on instead.

    Returns False if there was nothing to move. Raises ``BrokenResourceError`` if the
    receive stream was closed. Call it from the hooks to build your own plumbing, e.g. a
    pump that moves one byte per call to test reassembly.
    """
    try:
        data = memory_send_stream.get_data_nowait(max_bytes)
    except WouldBlock:
        return False
    try:
        if data:
            memory_receive_stream.put_data(data)
        else:
            memory_receive_stream.put_eof()
    except ClosedResourceError:
        raise BrokenResourceError("the MemoryReceiveStream was closed") from None
    return True


def memory_stream_one_way_pair() -> tuple[MemorySendStream, MemoryReceiveStream]:
    """A connected ``(MemorySendStream, MemoryReceiveStream)``: whatever is sent arrives
    immediately (``send_all`` and ``close`` pump it across), with unbounded buffering.

    Replace the send stream's hooks to change when and how data moves.
    """
    send_stream = MemorySendStream()
    receive_stream = MemoryReceiveStream()

    def pump() -> None:
        memory_stream_pump(send_stream, receive_stream)

    async def async_pump() -> None:
        pump()

    send_stream.send_all_hook = async_pump
    send_stream.close_hook = pump
    return send_stream, receive_stream


def _two_way(
    one_way_pair: Callable[[], tuple[SendStream, ReceiveStream]],
) -> tuple[StapledStream[SendStream, ReceiveStream], StapledStream[SendStream, ReceiveStream]]:
    a_send, b_receive = one_way_pair()
    b_send, a_receive = one_way_pair()
    return StapledStream(a_send, a_receive), StapledStream(b_send, b_receive)


def memory_stream_pair() -> tuple[
    StapledStream[MemorySendStream, MemoryReceiveStream],
    StapledStream[MemorySendStream, MemoryReceiveStream],
]:
    """Two :class:`~nursery_io.StapledStream`\\ s connected back to back, each made of
    a :func:`memory_stream_one_way_pair` per direction: an in-memory stand-in for a
    socket connection, with unbounded buffering.

    ``send_eof`` on one end closes its send stream, so the other end sees the end of the
    stream while the reverse direction keeps working. Reach the underlying streams
    through ``.send_stream`` / ``.receive_stream`` to install hooks.
    """
    a_send, b_receive = memory_stream_one_way_pair()
    b_send, a_receive = memory_stream_one_way_pair()
    return StapledStream(a_send, a_receive), StapledStream(b_send, b_receive)


# ----- lockstep streams -----


class _LockstepQueue:
    """The shared state of a lockstep one-way pair: at most one ``send_all`` worth of
    bytes, handed over only while the receiver asks for it."""

    __slots__ = (
        "_data",
        "_lot",
        "_receive_busy",
        "_receiver_closed",
        "_receiver_waiting",
        "_send_busy",
        "_sender_closed",
    )

    def __init__(self) -> None:
        self._data = bytearray()
        self._sender_closed = False
        self._receiver_closed = False
        self._receiver_waiting = False
        # Everybody waits on one lot and re-checks their condition when anything changes;
        # there are at most two waiters, so precision wakeups wouldn't buy anything.
        self._lot = ParkingLot()
        self._send_busy = _ConflictDetector("another task is already sending")
        self._receive_busy = _ConflictDetector("another task is already receiving")

    def _changed(self) -> None:
        self._lot.unpark_all()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        # Returns when the condition holds or either side closed; always a checkpoint.
        while not condition() and not self._sender_closed and not self._receiver_closed:
            await self._lot.park()
        await checkpoint()

    def close_sender(self) -> None:
        self._sender_closed = True
        self._changed()

    def close_receiver(self) -> None:
        self._receiver_closed = True
        self._changed()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_busy:
            if self._sender_closed:
                raise ClosedResourceError("this stream was closed")
            if self._receiver_closed:
                raise BrokenResourceError("the receiving stream was closed")
            self._data += data
            self._changed()
            await self._wait_until(lambda: not self._data)
            if self._sender_closed:
                raise ClosedResourceError("this stream was closed")
            if self._data and self._receiver_closed:
                raise BrokenResourceError("the receiving stream was closed")

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            if self._sender_closed:
                raise ClosedResourceError("this stream was closed")
            if self._receiver_closed:
                # send_all would fail at once rather than block.
                await checkpoint()
                return
            await self._wait_until(lambda: self._receiver_waiting)
            if self._sender_closed:
                raise ClosedResourceError("this stream was closed")

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        with self._receive_busy:
            max_bytes = _check_max_bytes(max_bytes)
            if self._receiver_closed:
                raise ClosedResourceError("this stream was closed")
            self._receiver_waiting = True
            self._changed()
            try:
                await self._wait_until(lambda: bool(self._data))
            finally:
                self._receiver_waiting = False
            if self._receiver_closed:
                raise ClosedResourceError("this stream was closed")
            if not self._data:
                # Woken with nothing to read: the sender closed, so this is the end.
                return bytearray()
            if max_bytes is None:
                max_bytes = len(self._data)
            chunk = self._data[:max_bytes]
            del self._data[:max_bytes]
            self._changed()
            return chunk


class _LockstepSendStream(SendStream):
    __slots__ = ("_queue",)

    def __init__(self, queue: _LockstepQueue) -> None:
        self._queue = queue

    def close(self) -> None:
        self._queue.close_sender()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._queue.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._queue.wait_send_all_might_not_block()


class _LockstepReceiveStream(ReceiveStream):
    __slots__ = ("_queue",)

    def __init__(self, queue: _LockstepQueue) -> None:
        self._queue = queue

    def close(self) -> None:
        self._queue.close_receiver()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        return await self._queue.receive_some(max_bytes)


def lockstep_stream_one_way_pair() -> tuple[SendStream, ReceiveStream]:
    """A connected ``(SendStream, ReceiveStream)`` with no buffering at all.

    ``send_all`` returns only after the receiver has taken all of its data (possibly
    over several ``receive_some`` calls); ``wait_send_all_might_not_block`` returns only
    while a ``receive_some`` is waiting. Closing the receiver makes sending fail with
    ``BrokenResourceError``; closing the sender ends the receiver's stream.
    """
    queue = _LockstepQueue()
    return _LockstepSendStream(queue), _LockstepReceiveStream(queue)


def lockstep_stream_pair() -> tuple[
    StapledStream[SendStream, ReceiveStream], StapledStream[SendStream, ReceiveStream]
]:
    """Two :class:`~nursery_io.StapledStream`\\ s connected back to back through a
    :func:`lockstep_stream_one_way_pair` per direction: a stream pair with no buffering,
    useful for catching code that deadlocks unless the transport buffers."""
    return _two_way(lockstep_stream_one_way_pair)
