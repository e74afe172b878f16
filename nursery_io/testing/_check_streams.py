"""Conformance suites for stream implementations.

Each ``check_*`` function exercises the contract of :mod:`nursery_io.abc` — data arrives
intact and in order, ``max_bytes`` is honoured, closing and half-closing behave, misuse is
detected, the operations are checkpoints — against streams produced by factories you pass
in, and raises ``AssertionError`` on the first violation. They run inside a nursery_io run
(for example from an async test).

The factories are async callables returning a fresh, connected pair on every call; the
suites make many pairs and always close them. The optional *clogged* factory returns a
pair whose sending side is full: ``send_all`` and ``wait_send_all_might_not_block`` block
until the receiving side has read (for a two-way stream: in both directions). It enables
the checks about blocking sends; pass None if you can't build one.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Generic, ParamSpec, TypeVar

from .._core import (
    BrokenResourceError,
    BusyResourceError,
    CancelScope,
    ClosedResourceError,
    TaskStatus,
    open_nursery,
    wait_all_tasks_blocked,
)
from .._highlevel_generic import aclose_forcefully
from .._sync import Event
from ..abc import HalfCloseableStream, ReceiveStream, SendStream, Stream
from ._checkpoints import assert_checkpoints

__all__ = ["check_half_closeable_stream", "check_one_way_stream", "check_two_way_stream"]

P = ParamSpec("P")
SendT = TypeVar("SendT", bound=SendStream)
ReceiveT = TypeVar("ReceiveT", bound=ReceiveStream)

StreamMaker = Callable[[], Awaitable[tuple[SendT, ReceiveT]]]
# How long the generated payloads are: big enough to need several chunks on real
# transports, small enough to keep the suites quick.
_BIG = 2**17


class _Failure(AssertionError):
    pass


def _first_failure(group: BaseExceptionGroup[BaseException]) -> AssertionError | None:
    for exc in group.exceptions:
        if isinstance(exc, AssertionError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_failure(exc)
            if found is not None:
                return found
    return None


def _plain_assertion_errors(
    fn: Callable[P, Awaitable[None]],
) -> Callable[P, Coroutine[Any, Any, None]]:
    # Checks that run in helper tasks fail inside nurseries, which wrap the failure in an
    # exception group; callers were promised an AssertionError.
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await fn(*args, **kwargs)
        except BaseExceptionGroup as group:
            failure = _first_failure(group)
            if failure is None:
                raise
            raise _Failure(str(failure)) from group

    return wrapper


@contextmanager
def _expect(exc_type: type[BaseException], what: str) -> Iterator[None]:
    try:
        yield
    except exc_type:
        return
    except Exception as exc:  # Cancelled and KeyboardInterrupt must pass through
        raise _Failure(
            f"{what}: expected {exc_type.__name__}, got {type(exc).__name__}: {exc!r}"
        ) from exc
    raise _Failure(f"{what}: expected {exc_type.__name__}, but nothing was raised")


@contextmanager
def _no_error(what: str) -> Iterator[None]:
    # For operations whose failure means the stream broke the contract rather than the test.
    try:
        yield
    except (BrokenResourceError, ClosedResourceError) as exc:
        raise _Failure(f"{what} failed: {type(exc).__name__}: {exc}") from exc


class _Pair(Generic[SendT, ReceiveT]):
    """``async with _Pair(maker) as (s, r):`` — a fresh pair, forcefully closed after."""

    def __init__(self, maker: StreamMaker[SendT, ReceiveT]) -> None:
        self._maker = maker
        self._pair: tuple[SendT, ReceiveT] | None = None

    async def __aenter__(self) -> tuple[SendT, ReceiveT]:
        self._pair = await self._maker()
        return self._pair

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._pair is not None
        send, receive = self._pair
        # Closing may report that the peer is already gone; that's not a failure here.
        try:
            with contextlib.suppress(BrokenResourceError):
                await aclose_forcefully(send)
        finally:
            with contextlib.suppress(BrokenResourceError):
                await aclose_forcefully(receive)


async def _expect_busy(what: str, *fns: Callable[[], Awaitable[object]]) -> None:
    """Run ``fns`` concurrently: one of them must raise BusyResourceError, after which the
    rest are cancelled."""
    busy_seen = False

    async def run(fn: Callable[[], Awaitable[object]]) -> None:
        nonlocal busy_seen
        try:
            await fn()
        except BusyResourceError:
            busy_seen = True
            nursery.cancel_scope.cancel()

    async with open_nursery() as nursery:
        for fn in fns:
            nursery.start_soon(run, fn)
        await wait_all_tasks_blocked()
        # Nobody noticed the conflict (or everyone finished): stop the stragglers.
        nursery.cancel_scope.cancel()
    if not busy_seen:
        raise _Failure(f"{what}: simultaneous calls did not raise BusyResourceError")


async def _receive_exactly(stream: ReceiveStream, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        chunk = await stream.receive_some(count - len(received))
        if not chunk:
            raise _Failure(f"stream ended after {len(received)} of {count} expected bytes")
        if len(chunk) > count - len(received):
            raise _Failure(f"receive_some({count - len(received)}) returned {len(chunk)} bytes")
        received += chunk
    return bytes(received)


async def _receive_until_eof(stream: ReceiveStream) -> bytes:
    received = bytearray()
    while True:
        chunk = await stream.receive_some()
        if not chunk:
            return bytes(received)
        received += chunk


async def _checked_aclose(stream: SendStream | ReceiveStream) -> None:
    with assert_checkpoints():
        await stream.aclose()


def _payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _chunks(seed: int, data: bytes) -> Iterator[bytes | bytearray | memoryview]:
    # Random sizes and all three buffer types: implementations must accept each.
    rng = random.Random(seed)
    kinds = (bytes, bytearray, memoryview)
    offset = 0
    while offset < len(data):
        size = rng.randint(1, 2 * 4096)
        piece = data[offset : offset + size]
        offset += size
        yield kinds[rng.randrange(3)](piece)


@_plain_assertion_errors
async def check_one_way_stream(
    stream_maker: StreamMaker[SendStream, ReceiveStream],
    clogged_stream_maker: StreamMaker[SendStream, ReceiveStream] | None,
) -> None:
    """Check a one-way stream implementation.

    ``stream_maker`` returns a connected ``(SendStream, ReceiveStream)``;
    ``clogged_stream_maker`` is None or returns one whose sender is blocked until the
    receiver reads (see the module docs). Raises ``AssertionError`` on the first failure.
    """
    async with _Pair(stream_maker) as (s, r):
        assert isinstance(s, SendStream), f"{s!r} is not a SendStream"
        assert isinstance(r, ReceiveStream), f"{r!r} is not a ReceiveStream"

    # Plain transfer in both buffer types and sizes, then the end of the stream.
    async with _Pair(stream_maker) as (s, r):
        data = _payload(1, _BIG)

        async def send_then_close() -> None:
            with assert_checkpoints():
                await s.send_all(b"")
            for chunk in _chunks(2, data):
                with assert_checkpoints():
                    await s.send_all(chunk)
            with assert_checkpoints():
                await s.aclose()

        async with open_nursery() as nursery:
            nursery.start_soon(send_then_close)
            got = await _receive_until_eof(r)
        assert got == data, "received data differs from what was sent"
        for _ in range(2):
            with assert_checkpoints():
                assert await r.receive_some(10) == b"", "the end of the stream must persist"

    # max_bytes is honoured and validated; data comes back in order.
    async with _Pair(stream_maker) as (s, r), open_nursery() as nursery:
        nursery.start_soon(s.send_all, b"abcdef")
        for bad in (0, -1):
            with _expect(ValueError, f"receive_some({bad})"):
                await r.receive_some(bad)
        with assert_checkpoints():
            first = await r.receive_some(1)
        assert first == b"a", f"receive_some(1) returned {first!r}, expected b'a'"
        assert await _receive_exactly(r, 5) == b"bcdef"

    # async iteration yields the chunks and stops at the end of the stream.
    async with _Pair(stream_maker) as (s, r):

        async def send_and_close() -> None:
            await s.send_all(b"hello ")
            await s.send_all(b"world")
            await s.aclose()

        async with open_nursery() as nursery:
            nursery.start_soon(send_and_close)
            got = b"".join([bytes(chunk) async for chunk in r])
        assert got == b"hello world", f"async iteration produced {got!r}"

    # wait_send_all_might_not_block returns (with a receiver waiting) and is a checkpoint.
    async with _Pair(stream_maker) as (s, r):

        async def wait_then_stop() -> None:
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
            nursery.cancel_scope.cancel()

        async with open_nursery() as nursery:
            nursery.start_soon(r.receive_some, 1)
            nursery.start_soon(wait_then_stop)

    # A cancelled receive_some leaves the stream usable.
    async with _Pair(stream_maker) as (s, r):
        with CancelScope() as scope:
            scope.cancel()
            await r.receive_some(1)
        assert scope.cancelled_caught, "receive_some(1) was not a cancellation point"
        async with open_nursery() as nursery:
            nursery.start_soon(s.send_all, b"z")
            assert await _receive_exactly(r, 1) == b"z"

    # Using one side from two tasks at once.
    async with _Pair(stream_maker) as (s, r):
        await _expect_busy("two receive_some calls", r.receive_some, r.receive_some)
    async with _Pair(stream_maker) as (s, r):
        await _expect_busy(
            "two send_all calls", lambda: s.send_all(b"x" * _BIG), lambda: s.send_all(b"y" * _BIG)
        )
    async with _Pair(stream_maker) as (s, r):
        await _expect_busy(
            "send_all and wait_send_all_might_not_block",
            lambda: s.send_all(b"x" * _BIG),
            s.wait_send_all_might_not_block,
        )

    # Closing: idempotent, a checkpoint, and closed objects refuse work. The first close
    # of each side runs concurrently: a graceful close may need the peer's help (a TLS
    # stream has to finish its handshake before it can say goodbye).
    async with _Pair(stream_maker) as (s, r):
        for _ in range(2):
            async with open_nursery() as nursery:
                for stream in (s, r):
                    nursery.start_soon(_checked_aclose, stream)
        with _expect(ClosedResourceError, "send_all on a closed stream"):
            await s.send_all(b"x")
        with _expect(ClosedResourceError, "wait_send_all_might_not_block on a closed stream"):
            await s.wait_send_all_might_not_block()
        with _expect(ClosedResourceError, "receive_some on a closed stream"):
            await r.receive_some(10)
        with _expect(ClosedResourceError, "receive_some() on a closed stream"):
            await r.receive_some()

    # aclose_forcefully (aclose in a cancelled scope) still closes.
    async with _Pair(stream_maker) as (s, r):
        await aclose_forcefully(s)
        await aclose_forcefully(r)
        with _expect(ClosedResourceError, "send_all after a cancelled aclose"):
            await s.send_all(b"x")
        with _expect(ClosedResourceError, "receive_some after a cancelled aclose"):
            await r.receive_some(10)

    # Closing the receiver breaks the sender (eventually: a transport may buffer a bit).
    # The sender keeps sending meanwhile, so a close that needs the peer can complete.
    async with _Pair(stream_maker) as (s, r):

        async def send_until_broken() -> None:
            with _expect(BrokenResourceError, "send_all after the receiver closed"):
                for _ in range(1000):
                    await s.send_all(b"x" * 1024)

        async with open_nursery() as nursery:
            nursery.start_soon(send_until_broken)
            nursery.start_soon(r.aclose)
        with _expect(BrokenResourceError, "send_all once the stream broke"):
            await s.send_all(b"x")
        # Sending would fail at once now, so this must return (or report the breakage).
        try:
            await s.wait_send_all_might_not_block()
        except BrokenResourceError:
            pass
        await s.aclose()

    # Closing the sender wakes a blocked receiver with the end of the stream.
    async with _Pair(stream_maker) as (s, r), open_nursery() as nursery:

        async def expect_eof() -> None:
            got = await r.receive_some(10)
            assert got == b"", f"expected the end of the stream, got {got!r}"

        nursery.start_soon(expect_eof)
        await wait_all_tasks_blocked()
        await s.aclose()

    # Closing the receiver from another task interrupts its blocked receive_some.
    async with _Pair(stream_maker) as (s, r), open_nursery() as nursery:

        async def expect_closed() -> None:
            with _expect(ClosedResourceError, "receive_some while the stream is closed"):
                await r.receive_some(10)

        nursery.start_soon(expect_closed)
        await wait_all_tasks_blocked()
        # Forcefully: a graceful close may wait for the idle peer (a TLS handshake).
        await aclose_forcefully(r)

    if clogged_stream_maker is not None:
        await _check_clogged(clogged_stream_maker)


async def _check_clogged(clogged_stream_maker: StreamMaker[SendStream, ReceiveStream]) -> None:
    # send_all into a clogged stream completes once the receiver reads, and nothing is
    # lost. (Whether a given send_all blocks is not checked: a real transport may find
    # room for a little more data after clogging, e.g. when TCP grows its buffers.)
    async with _Pair(clogged_stream_maker) as (s, r):
        payload = _payload(3, _BIG)
        sent = Event()

        async def sender() -> None:
            await s.send_all(payload)
            sent.set()

        async with open_nursery() as nursery:
            nursery.start_soon(sender)
            await wait_all_tasks_blocked()
            # Read past whatever clogged the stream until the payload arrives. (Not to
            # the end of the stream: closing a socket with unread data resets it.)
            got = bytearray()
            while not got.endswith(payload):
                chunk = await r.receive_some()
                if not chunk:
                    raise _Failure("data sent into a clogged stream never arrived")
                got += chunk
        assert sent.is_set()

    # wait_send_all_might_not_block blocks while clogged and returns once the receiver
    # reads.
    async with _Pair(clogged_stream_maker) as (s, r):
        writable = Event()

        async def waiter() -> None:
            await s.wait_send_all_might_not_block()
            writable.set()

        async with open_nursery() as nursery:
            nursery.start_soon(waiter)
            await wait_all_tasks_blocked()
            assert not writable.is_set(), "wait_send_all_might_not_block did not block"

            async def drain() -> None:
                while True:
                    if not await r.receive_some():
                        return

            nursery.start_soon(drain)
            await writable.wait()
            nursery.cancel_scope.cancel()

    # Closing the sender from another task interrupts its blocked operations.
    for operation in ("send_all", "wait_send_all_might_not_block"):
        async with _Pair(clogged_stream_maker) as (s, r):

            async def blocked(operation: str = operation, s: SendStream = s) -> None:
                with _expect(ClosedResourceError, f"{operation} while the stream is closed"):
                    if operation == "send_all":
                        await s.send_all(b"x" * _BIG)
                    else:
                        await s.wait_send_all_might_not_block()

            async with open_nursery() as nursery:
                nursery.start_soon(blocked)
                await wait_all_tasks_blocked()
                await s.aclose()

    # Conflicts while blocked.
    async with _Pair(clogged_stream_maker) as (s, r):
        await _expect_busy(
            "two send_all calls on a clogged stream",
            lambda: s.send_all(b"x"),
            lambda: s.send_all(b"y"),
        )
    async with _Pair(clogged_stream_maker) as (s, r):
        await _expect_busy(
            "send_all and wait_send_all_might_not_block on a clogged stream",
            lambda: s.send_all(b"x"),
            s.wait_send_all_might_not_block,
        )
    async with _Pair(clogged_stream_maker) as (s, r):
        await _expect_busy(
            "two wait_send_all_might_not_block calls on a clogged stream",
            s.wait_send_all_might_not_block,
            s.wait_send_all_might_not_block,
        )


def _flipped(maker: StreamMaker[Stream, Stream]) -> StreamMaker[Stream, Stream]:
    async def flipped() -> tuple[Stream, Stream]:
        a, b = await maker()
        return b, a

    return flipped


@_plain_assertion_errors
async def check_two_way_stream(
    stream_maker: StreamMaker[Stream, Stream],
    clogged_stream_maker: StreamMaker[Stream, Stream] | None,
) -> None:
    """Check a bidirectional :class:`~nursery_io.abc.Stream` implementation.

    Like :func:`check_one_way_stream` (which it runs in both directions), with makers
    that return a connected pair of streams; then checks traffic in both directions at
    once. Raises ``AssertionError`` on the first failure.
    """
    await check_one_way_stream(stream_maker, clogged_stream_maker)
    await check_one_way_stream(
        _flipped(stream_maker),
        None if clogged_stream_maker is None else _flipped(clogged_stream_maker),
    )

    async with _Pair(stream_maker) as (s1, s2):
        assert isinstance(s1, Stream), f"{s1!r} is not a Stream"
        assert isinstance(s2, Stream), f"{s2!r} is not a Stream"

    # Both directions at full speed at the same time: no deadlock, no corruption, even
    # for transports with little or no buffering.
    async with _Pair(stream_maker) as (s1, s2):
        data1, data2 = _payload(4, _BIG), _payload(5, _BIG)
        results: dict[str, bytes] = {}

        async def send(stream: Stream, data: bytes, seed: int) -> None:
            for chunk in _chunks(seed, data):
                await stream.send_all(chunk)

        async def receive(stream: Stream, count: int, key: str) -> None:
            results[key] = await _receive_exactly(stream, count)

        async with open_nursery() as nursery:
            nursery.start_soon(send, s1, data1, 6)
            nursery.start_soon(send, s2, data2, 7)
            nursery.start_soon(receive, s2, len(data1), "at s2")
            nursery.start_soon(receive, s1, len(data2), "at s1")
        assert results["at s2"] == data1, "data from s1 to s2 was corrupted"
        assert results["at s1"] == data2, "data from s2 to s1 was corrupted"

    # Sending and receiving on the same stream from two tasks is not a conflict.
    async with _Pair(stream_maker) as (s1, s2):

        async def echo_one() -> None:
            got = await _receive_exactly(s2, 4)
            await s2.send_all(got[::-1])

        async with open_nursery() as nursery:
            nursery.start_soon(echo_one)
            receiving = await nursery.start(_start_receiving, s1, 4)
            await s1.send_all(b"ping")
        assert receiving.result == b"gnip", f"round trip produced {receiving.result!r}"

    # Closing one end: the peer sees the end of the stream. The peer reads meanwhile, so
    # a close that needs its help (a TLS handshake) can complete.
    async with _Pair(stream_maker) as (s1, s2), open_nursery() as nursery:

        async def expect_eof_at_s2() -> None:
            got = await s2.receive_some(10)
            assert got == b"", f"peer of a closed stream did not see EOF, got {got!r}"

        nursery.start_soon(expect_eof_at_s2)
        nursery.start_soon(s1.aclose)


class _Receiving:
    def __init__(self) -> None:
        self.result = b""


async def _start_receiving(
    stream: Stream, count: int, *, task_status: TaskStatus[_Receiving]
) -> None:
    holder = _Receiving()
    task_status.started(holder)
    holder.result = await _receive_exactly(stream, count)


@_plain_assertion_errors
async def check_half_closeable_stream(
    stream_maker: StreamMaker[HalfCloseableStream, HalfCloseableStream],
    clogged_stream_maker: StreamMaker[HalfCloseableStream, HalfCloseableStream] | None,
) -> None:
    """Check a :class:`~nursery_io.abc.HalfCloseableStream` implementation.

    Everything :func:`check_two_way_stream` checks, plus ``send_eof``: the peer sees the
    end of the stream while the other direction keeps working; repeating it is harmless;
    sending afterwards raises ``ClosedResourceError``; it conflicts with a concurrent
    send. Raises ``AssertionError`` on the first failure.
    """
    await check_two_way_stream(stream_maker, clogged_stream_maker)

    async with _Pair(stream_maker) as (s1, s2):
        assert isinstance(s1, HalfCloseableStream), f"{s1!r} is not a HalfCloseableStream"
        assert isinstance(s2, HalfCloseableStream), f"{s2!r} is not a HalfCloseableStream"

    async with _Pair(stream_maker) as (s1, s2):

        async def s1_side() -> None:
            await s1.send_all(b"x")
            with assert_checkpoints():
                await s1.send_eof()
            # A second send_eof is harmless.
            await s1.send_eof()
            with _expect(ClosedResourceError, "send_all after send_eof"):
                await s1.send_all(b"y")
            # Still receiving.
            with _no_error("receiving after send_eof"):
                got = await _receive_until_eof(s1)
            assert got == b"reply", "s1 lost data after send_eof"

        async def s2_side() -> None:
            assert await _receive_until_eof(s2) == b"x", "s2 got the wrong data before EOF"
            # Still sending after the peer's EOF.
            with _no_error("sending to a peer that called send_eof"):
                await s2.send_all(b"reply")
                await s2.send_eof()

        async with open_nursery() as nursery:
            nursery.start_soon(s1_side)
            nursery.start_soon(s2_side)

    # send_eof wakes a peer that is blocked in receive_some.
    async with _Pair(stream_maker) as (s1, s2), open_nursery() as nursery:

        async def expect_eof() -> None:
            got = await s2.receive_some(10)
            assert got == b"", f"expected the end of the stream, got {got!r}"

        nursery.start_soon(expect_eof)
        await wait_all_tasks_blocked()
        await s1.send_eof()

    if clogged_stream_maker is not None:
        async with _Pair(clogged_stream_maker) as (s1, s2):
            await _expect_busy(
                "send_all and send_eof on a clogged stream", lambda: s1.send_all(b"x"), s1.send_eof
            )
        async with _Pair(clogged_stream_maker) as (s1, s2):
            await _expect_busy(
                "wait_send_all_might_not_block and send_eof on a clogged stream",
                s1.wait_send_all_might_not_block,
                s1.send_eof,
            )
