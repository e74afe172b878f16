"""Tests for the in-memory test streams (nursery_io.testing._memory_streams)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

import nursery_io
from nursery_io import (
    BrokenResourceError,
    BusyResourceError,
    CancelScope,
    ClosedResourceError,
    StapledStream,
    WouldBlock,
)
from nursery_io.abc import ReceiveStream, SendStream
from nursery_io.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    assert_checkpoints,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
    wait_all_tasks_blocked,
)


async def _expect_conflict(*fns: Callable[[], Awaitable[object]]) -> None:
    """Start ``fns`` together; one must hit BusyResourceError. Cancel the rest."""
    busy: list[BusyResourceError] = []

    async def run(fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except BusyResourceError as exc:
            busy.append(exc)

    async with nursery_io.open_nursery() as nursery:
        for fn in fns:
            nursery.start_soon(run, fn)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(busy) == 1


# ----- MemorySendStream -----


async def test_memory_send_stream_buffer() -> None:
    stream = MemorySendStream()
    assert isinstance(stream, SendStream)
    with pytest.raises(WouldBlock):
        stream.get_data_nowait()
    with assert_checkpoints():
        await stream.send_all(b"abc")
    await stream.send_all(bytearray(b"def"))
    await stream.send_all(memoryview(b"gh"))
    assert stream.get_data_nowait(2) == b"ab"
    assert await stream.get_data() == b"cdefgh"
    for bad in (0, -1):
        with pytest.raises(ValueError):
            stream.get_data_nowait(bad)
    with pytest.raises(TypeError):
        await stream.get_data(1.5)  # type: ignore[arg-type]
    with assert_checkpoints():
        await stream.wait_send_all_might_not_block()

    # get_data waits for data.
    async with nursery_io.open_nursery() as nursery:
        results: list[bytes] = []

        async def getter() -> None:
            results.append(await stream.get_data())

        nursery.start_soon(getter)
        await wait_all_tasks_blocked()
        assert results == []
        await stream.send_all(b"late")
    assert results == [b"late"]

    await stream.send_all(b"tail")
    with assert_checkpoints():
        await stream.aclose()
    # Closed: buffered data can still be fetched, then it reports the end.
    assert await stream.get_data() == b"tail"
    assert await stream.get_data() == b""
    assert stream.get_data_nowait() == b""
    with pytest.raises(ClosedResourceError):
        await stream.send_all(b"x")
    with pytest.raises(ClosedResourceError):
        await stream.wait_send_all_might_not_block()


async def test_memory_send_stream_cancelled_send_leaves_nothing() -> None:
    stream = MemorySendStream()
    with CancelScope() as scope:
        scope.cancel()
        await stream.send_all(b"x")
    assert scope.cancelled_caught
    with pytest.raises(WouldBlock):
        stream.get_data_nowait()


async def test_memory_send_stream_hooks() -> None:
    log: list[str] = []

    async def send_all_hook() -> None:
        log.append(f"send_all_hook sees {stream.get_data_nowait()!r}")

    async def wait_hook() -> None:
        log.append("wait hook")

    stream = MemorySendStream(send_all_hook, wait_hook, lambda: log.append("close hook"))
    await stream.send_all(b"x")
    await stream.wait_send_all_might_not_block()
    # Hooks are plain attributes and can be swapped at any time.
    stream.send_all_hook = None
    await stream.send_all(b"y")
    stream.close()
    await stream.aclose()
    assert log == [
        "send_all_hook sees bytearray(b'x')",
        "wait hook",
        "close hook",
        "close hook",
    ]


async def test_memory_send_stream_conflicts() -> None:
    stream = MemorySendStream()
    await _expect_conflict(lambda: stream.send_all(b"1"), lambda: stream.send_all(b"2"))
    await _expect_conflict(lambda: stream.send_all(b"1"), stream.wait_send_all_might_not_block)
    stream = MemorySendStream()
    await _expect_conflict(stream.get_data, stream.get_data)


# ----- MemoryReceiveStream -----


async def test_memory_receive_stream() -> None:
    log: list[str] = []

    async def receive_hook() -> None:
        log.append("receive hook")

    stream = MemoryReceiveStream(receive_hook, lambda: log.append("close hook"))
    assert isinstance(stream, ReceiveStream)
    stream.put_data(b"hello")
    with assert_checkpoints():
        assert await stream.receive_some(2) == b"he"
    assert await stream.receive_some() == b"llo"
    for bad in (0, -3):
        with pytest.raises(ValueError):
            await stream.receive_some(bad)
    # receive_some waits for data; the hook runs before the wait.
    async with nursery_io.open_nursery() as nursery:
        got: list[bytes] = []

        async def receiver() -> None:
            got.append(await stream.receive_some())

        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        assert got == []
        stream.put_data(b"later")
    assert got == [b"later"]
    stream.put_data(b"rest")
    stream.put_eof()
    with pytest.raises(ClosedResourceError):
        stream.put_data(b"too late")
    assert await stream.receive_some() == b"rest"
    assert await stream.receive_some() == b""
    assert await stream.receive_some() == b""
    await stream.aclose()
    with pytest.raises(ClosedResourceError):
        await stream.receive_some()
    assert log.count("receive hook") == 8
    assert log[-1] == "close hook"


async def test_memory_receive_stream_close_while_blocked() -> None:
    stream = MemoryReceiveStream()
    stream.put_data(b"discarded")
    outcome: list[str] = []

    async def receiver() -> None:
        # The buffered data is consumed first, so block on an empty buffer.
        await stream.receive_some()
        try:
            await stream.receive_some()
        except ClosedResourceError:
            outcome.append("closed")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        stream.close()
    assert outcome == ["closed"]
    # close() discards buffered data.
    stream2 = MemoryReceiveStream()
    stream2.put_data(b"x")
    stream2.close()
    with pytest.raises(ClosedResourceError):
        await stream2.receive_some()


async def test_memory_receive_stream_conflict() -> None:
    stream = MemoryReceiveStream()
    await _expect_conflict(stream.receive_some, stream.receive_some)


# ----- pump and pairs -----


async def test_memory_stream_pump() -> None:
    send, receive = MemorySendStream(), MemoryReceiveStream()
    assert not memory_stream_pump(send, receive)
    await send.send_all(b"abcdef")
    assert memory_stream_pump(send, receive, max_bytes=4)
    assert await receive.receive_some() == b"abcd"
    assert memory_stream_pump(send, receive)
    assert not memory_stream_pump(send, receive)
    assert await receive.receive_some() == b"ef"
    await send.aclose()
    # A closed, drained send stream pumps the end of the stream across.
    assert memory_stream_pump(send, receive)
    assert await receive.receive_some() == b""
    # A closed receiving side shows up as a broken connection.
    send, receive = MemorySendStream(), MemoryReceiveStream()
    await send.send_all(b"x")
    receive.close()
    with pytest.raises(BrokenResourceError):
        memory_stream_pump(send, receive)


async def test_memory_stream_one_way_pair() -> None:
    send, receive = memory_stream_one_way_pair()
    await send.send_all(b"instant")
    # No task needed to move it: the send hook pumps synchronously.
    assert await receive.receive_some() == b"instant"
    # Custom plumbing: deliver one byte per receive_some call.
    send.send_all_hook = None

    async def trickle() -> None:
        memory_stream_pump(send, receive, max_bytes=1)

    receive.receive_some_hook = trickle
    await send.send_all(b"xyz")
    assert [await receive.receive_some() for _ in range(3)] == [b"x", b"y", b"z"]
    await send.aclose()
    assert await receive.receive_some() == b""


async def test_memory_stream_one_way_pair_eof_and_broken() -> None:
    send, receive = memory_stream_one_way_pair()
    await send.send_all(b"last")
    await send.aclose()
    assert await receive.receive_some() == b"last"
    assert await receive.receive_some() == b""
    send, receive = memory_stream_one_way_pair()
    await receive.aclose()
    with pytest.raises(BrokenResourceError):
        await send.send_all(b"x")


async def test_memory_stream_pair() -> None:
    a, b = memory_stream_pair()
    assert isinstance(a, StapledStream)
    await a.send_all(b"to b")
    await b.send_all(b"to a")
    assert await b.receive_some() == b"to b"
    assert await a.receive_some() == b"to a"
    await a.send_eof()
    assert await b.receive_some() == b""
    with pytest.raises(ClosedResourceError):
        await a.send_all(b"x")
    await b.send_all(b"still open")
    assert await a.receive_some() == b"still open"
    await a.aclose()
    await b.aclose()


# ----- lockstep -----


async def test_lockstep_send_waits_for_receiver() -> None:
    send, receive = lockstep_stream_one_way_pair()
    progress: list[str] = []

    async def sender() -> None:
        await send.send_all(b"abcd")
        progress.append("sent")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sender)
        await wait_all_tasks_blocked()
        assert progress == []
        assert await receive.receive_some(3) == b"abc"
        await wait_all_tasks_blocked()
        # Not everything was taken yet.
        assert progress == []
        assert await receive.receive_some() == b"d"
    assert progress == ["sent"]
    for bad in (0, -1):
        with pytest.raises(ValueError):
            await receive.receive_some(bad)


async def test_lockstep_wait_send_all_might_not_block() -> None:
    send, receive = lockstep_stream_one_way_pair()
    progress: list[str] = []

    async def waiter() -> None:
        await send.wait_send_all_might_not_block()
        progress.append("writable")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert progress == []
        nursery.start_soon(receive.receive_some)
        await wait_all_tasks_blocked()
        assert progress == ["writable"]
        nursery.cancel_scope.cancel()


async def test_lockstep_close_semantics() -> None:
    # Closing the receiver breaks a blocked sender and later sends.
    send, receive = lockstep_stream_one_way_pair()
    errors: list[str] = []

    async def sender() -> None:
        try:
            await send.send_all(b"never read")
        except BrokenResourceError:
            errors.append("broken")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sender)
        await wait_all_tasks_blocked()
        await receive.aclose()
    assert errors == ["broken"]
    with pytest.raises(BrokenResourceError):
        await send.send_all(b"x")
    # Writing would fail at once, so waiting for writability returns.
    await send.wait_send_all_might_not_block()
    with pytest.raises(ClosedResourceError):
        await receive.receive_some()
    await send.aclose()
    with pytest.raises(ClosedResourceError):
        await send.send_all(b"x")
    with pytest.raises(ClosedResourceError):
        await send.wait_send_all_might_not_block()

    # Closing the sender ends the stream for the receiver.
    send, receive = lockstep_stream_one_way_pair()
    async with nursery_io.open_nursery() as nursery:
        got: list[bytes] = []

        async def receiver() -> None:
            got.append(await receive.receive_some())

        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        await send.aclose()
    assert got == [b""]
    assert await receive.receive_some() == b""


async def test_lockstep_conflicts() -> None:
    send, receive = lockstep_stream_one_way_pair()
    await _expect_conflict(lambda: send.send_all(b"1"), lambda: send.send_all(b"2"))
    send, receive = lockstep_stream_one_way_pair()
    await _expect_conflict(lambda: send.send_all(b"1"), send.wait_send_all_might_not_block)
    send, receive = lockstep_stream_one_way_pair()
    await _expect_conflict(receive.receive_some, receive.receive_some)


async def test_lockstep_stream_pair() -> None:
    a, b = lockstep_stream_pair()

    async def echo() -> None:
        data = await b.receive_some()
        await b.send_all(bytes(data).upper())

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(echo)
        await a.send_all(b"shout")
        assert await a.receive_some() == b"SHOUT"
    await a.aclose()
    assert await b.receive_some() == b""
    await b.aclose()
