"""Tests for StapledStream and aclose_forcefully."""

from __future__ import annotations

import math

import pytest

import nursery_io
from nursery_io import StapledStream, aclose_forcefully
from nursery_io.abc import AsyncResource, HalfCloseableStream, ReceiveStream, SendStream
from nursery_io.lowlevel import checkpoint
from nursery_io.testing import MemoryReceiveStream, MemorySendStream


class RecordingSendStream(SendStream):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.log.append(f"send_all {bytes(data)!r}")

    async def wait_send_all_might_not_block(self) -> None:
        self.log.append("wait_send_all_might_not_block")

    async def aclose(self) -> None:
        self.log.append("send.aclose")


class RecordingHalfCloseable(RecordingSendStream):
    async def send_eof(self) -> None:
        self.log.append("send_eof")


class RecordingReceiveStream(ReceiveStream):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.log.append(f"receive_some {max_bytes}")
        return b"data"

    async def aclose(self) -> None:
        self.log.append("receive.aclose")


async def test_stapled_stream_delegates() -> None:
    log: list[str] = []
    stream = StapledStream(RecordingSendStream(log), RecordingReceiveStream(log))
    assert isinstance(stream, HalfCloseableStream)
    assert "StapledStream(send_stream=" in repr(stream)
    await stream.send_all(b"hi")
    await stream.wait_send_all_might_not_block()
    assert await stream.receive_some(10) == b"data"
    assert await stream.receive_some() == b"data"
    # Without a send_eof of its own, the send stream is simply closed.
    await stream.send_eof()
    await stream.aclose()
    assert log == [
        "send_all b'hi'",
        "wait_send_all_might_not_block",
        "receive_some 10",
        "receive_some None",
        "send.aclose",
        "send.aclose",
        "receive.aclose",
    ]
    # The attributes are public and replaceable.
    log.clear()
    stream.send_stream = RecordingHalfCloseable(log)
    await stream.send_eof()
    assert log == ["send_eof"]


async def test_stapled_stream_aclose_closes_both_on_error() -> None:
    class FailingClose(RecordingSendStream):
        async def aclose(self) -> None:
            raise ValueError("close failed")

    log: list[str] = []
    stream = StapledStream(FailingClose(log), RecordingReceiveStream(log))
    with pytest.raises(ValueError, match="close failed"):
        await stream.aclose()
    assert log == ["receive.aclose"]


async def test_stapled_memory_streams_round_trip() -> None:
    send, receive = MemorySendStream(), MemoryReceiveStream()
    stream = StapledStream(send, receive)
    await stream.send_all(b"out")
    assert send.get_data_nowait() == b"out"
    receive.put_data(b"in")
    assert await stream.receive_some() == b"in"
    async with stream:
        pass
    with pytest.raises(nursery_io.ClosedResourceError):
        await stream.send_all(b"x")
    with pytest.raises(nursery_io.ClosedResourceError):
        await stream.receive_some()


async def test_aclose_forcefully() -> None:
    events: list[str] = []

    class Resource(AsyncResource):
        async def aclose(self) -> None:
            events.append(f"deadline={nursery_io.current_effective_deadline()}")
            try:
                # A graceful shutdown would wait here; under aclose_forcefully it can't.
                await checkpoint()
            except nursery_io.Cancelled:
                events.append("graceful part cancelled")
                raise
            finally:
                events.append("closed")

    await aclose_forcefully(Resource())
    assert events == [f"deadline={-math.inf}", "graceful part cancelled", "closed"]
    # The cancellation stays inside: the caller itself is not cancelled afterwards.
    await checkpoint()

    # Errors other than the cancellation propagate.
    class Broken(AsyncResource):
        async def aclose(self) -> None:
            raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        await aclose_forcefully(Broken())
