"""lowlevel.FdStream over pipes and ttys."""

from __future__ import annotations

import errno
import os

import pytest

import nursery_io
from nursery_io import BrokenResourceError, BusyResourceError, ClosedResourceError
from nursery_io.lowlevel import FdStream
from nursery_io.testing import (
    assert_checkpoints,
    check_one_way_stream,
    wait_all_tasks_blocked,
)


async def pipe_streams() -> tuple[FdStream, FdStream]:
    r, w = os.pipe()
    return FdStream(w), FdStream(r)


async def clogged_pipe_streams() -> tuple[FdStream, FdStream]:
    r, w = os.pipe()
    send, receive = FdStream(w), FdStream(r)
    while True:
        try:
            os.write(w, b"\0" * 65536)
        except BlockingIOError:
            return send, receive


async def test_conformance() -> None:
    await check_one_way_stream(pipe_streams, clogged_pipe_streams)


async def test_blocking_mode_is_set_and_restored() -> None:
    r, w = os.pipe()
    try:
        keep = os.dup(r)  # shares the open file description, so it sees the mode
        stream = FdStream(r)
        assert stream.fileno() == r
        assert not os.get_blocking(keep)
        await stream.aclose()
        assert stream.fileno() == -1
        assert os.get_blocking(keep)
        with pytest.raises(OSError) as info:
            os.fstat(r)  # the stream closed its fd
        assert info.value.errno == errno.EBADF
        os.close(keep)
    finally:
        os.close(w)


async def test_an_fd_that_was_non_blocking_stays_so() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    keep = os.dup(r)
    FdStream(r).close()
    assert not os.get_blocking(keep)
    os.close(keep)
    os.close(w)


def test_bad_fd() -> None:
    with pytest.raises(OSError):
        FdStream(987654)
    with pytest.raises(TypeError):
        FdStream("0")  # type: ignore[arg-type]


async def test_transfer_eof_and_checkpoints() -> None:
    send, receive = await pipe_streams()
    async with send, receive:
        with assert_checkpoints():
            await send.send_all(b"through the pipe")
        with assert_checkpoints():
            assert await receive.receive_some(7) == b"through"
        assert await receive.receive_some() == b" the pipe"
        await send.aclose()
        assert await receive.receive_some() == b""
        with pytest.raises(ValueError):
            await receive.receive_some(0)
        with pytest.raises(TypeError):
            await receive.receive_some(1.5)  # type: ignore[arg-type]


async def test_large_write_with_concurrent_reader() -> None:
    send, receive = await pipe_streams()
    payload = os.urandom(1 << 20)
    received = bytearray()

    async def reader() -> None:
        while chunk := await receive.receive_some():
            received.extend(chunk)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(reader)
        await send.send_all(payload)
        await send.aclose()
    await receive.aclose()
    assert received == payload


async def test_broken_pipe() -> None:
    send, receive = await pipe_streams()
    await receive.aclose()
    async with send:
        with pytest.raises(BrokenResourceError) as info:
            await send.send_all(b"nobody listens")
        assert isinstance(info.value.__cause__, BrokenPipeError)


async def test_closed_stream() -> None:
    send, receive = await pipe_streams()
    await send.aclose()
    await receive.aclose()
    with pytest.raises(ClosedResourceError):
        await send.send_all(b"")
    with pytest.raises(ClosedResourceError):
        await send.wait_send_all_might_not_block()
    with pytest.raises(ClosedResourceError):
        await receive.receive_some()


async def test_close_wakes_blocked_reader_and_busy_detection() -> None:
    send, receive = await pipe_streams()
    async with send:

        async def blocked() -> None:
            with pytest.raises(ClosedResourceError):
                await receive.receive_some()

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await wait_all_tasks_blocked()
            with pytest.raises(BusyResourceError):
                await receive.receive_some()
            receive.close()


async def test_cancelled_receive_loses_nothing() -> None:
    send, receive = await pipe_streams()
    async with send, receive:
        with nursery_io.move_on_after(0.01):
            await receive.receive_some()
        await send.send_all(b"kept")
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await receive.receive_some()
        assert await receive.receive_some() == b"kept"


async def test_tty() -> None:
    controller, terminal = os.openpty()
    # Raw-ish: no echo, so what we write on one side is exactly what the other side reads.
    import tty

    tty.setraw(terminal)
    ours, theirs = FdStream(controller), FdStream(terminal)
    async with ours, theirs:
        await ours.send_all(b"typed\n")
        assert await theirs.receive_some() == b"typed\n"
        await theirs.send_all(b"printed")
        assert await ours.receive_some() == b"printed"
