"""Tests for the stream conformance suites: they pass on correct streams (the memory and
lockstep streams) and fail on streams that break the contract."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

import nursery_io
from nursery_io.abc import ReceiveStream, SendStream
from nursery_io.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
)


async def one_way_memory() -> tuple[MemorySendStream, MemoryReceiveStream]:
    return memory_stream_one_way_pair()


async def two_way_memory() -> Any:
    return memory_stream_pair()


async def one_way_lockstep() -> tuple[SendStream, ReceiveStream]:
    return lockstep_stream_one_way_pair()


async def two_way_lockstep() -> Any:
    return lockstep_stream_pair()


async def test_memory_one_way_passes() -> None:
    await check_one_way_stream(one_way_memory, None)


async def test_memory_pair_passes_half_closeable() -> None:
    await check_half_closeable_stream(two_way_memory, None)


async def test_lockstep_one_way_passes_with_clogged_checks() -> None:
    # A lockstep stream is always "clogged": sending waits for the receiver.
    await check_one_way_stream(one_way_lockstep, one_way_lockstep)


async def test_lockstep_pair_passes_two_way() -> None:
    await check_two_way_stream(two_way_lockstep, two_way_lockstep)


# ----- broken implementations are caught -----


class _WrappedReceive(ReceiveStream):
    """A MemoryReceiveStream behind a wrapper (the memory streams are final, as in Trio),
    so the broken variants below can change one method."""

    def __init__(self) -> None:
        self.inner = MemoryReceiveStream()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)


class _WrappedSend(SendStream):
    def __init__(self) -> None:
        self.inner = MemorySendStream()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()


def _wire(
    send: MemorySendStream | _WrappedSend, receive: MemoryReceiveStream | _WrappedReceive
) -> tuple[SendStream, ReceiveStream]:
    # The same plumbing as memory_stream_one_way_pair, for customised streams.
    send_inner = send.inner if isinstance(send, _WrappedSend) else send
    receive_inner = receive.inner if isinstance(receive, _WrappedReceive) else receive

    def pump() -> None:
        memory_stream_pump(send_inner, receive_inner)

    async def async_pump() -> None:
        pump()

    send_inner.send_all_hook = async_pump
    send_inner.close_hook = pump
    return send, receive


class IgnoresMaxBytes(_WrappedReceive):
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await super().receive_some(None)


class AcceptsZeroMaxBytes(_WrappedReceive):
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await super().receive_some(
            None if max_bytes is not None and max_bytes < 1 else max_bytes
        )


class ReturnsEOFWhenClosed(_WrappedReceive):
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.closed:
            return bytearray()
        return await super().receive_some(max_bytes)


class SendWithoutCheckpoint(_WrappedSend):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        await super().send_all(data)


class SendsAfterClose(_WrappedSend):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with contextlib.suppress(nursery_io.ClosedResourceError):
            await super().send_all(data)


def _no_conflict_detection(
    pair: tuple[MemorySendStream, MemoryReceiveStream],
) -> tuple[MemorySendStream, MemoryReceiveStream]:
    for stream in pair:
        stream._busy = contextlib.nullcontext()  # type: ignore[assignment]
    return pair


def _maker(factory: Callable[[], tuple[SendStream, ReceiveStream]]) -> Any:
    async def maker() -> tuple[SendStream, ReceiveStream]:
        return factory()

    return maker


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: _wire(MemorySendStream(), IgnoresMaxBytes()), "receive_some"),
        (lambda: _wire(MemorySendStream(), AcceptsZeroMaxBytes()), "receive_some(0)"),
        (lambda: _wire(MemorySendStream(), ReturnsEOFWhenClosed()), "closed"),
        (lambda: _wire(SendWithoutCheckpoint(), MemoryReceiveStream()), "checkpoint"),
        (lambda: _wire(SendsAfterClose(), MemoryReceiveStream()), "closed stream"),
        (lambda: _no_conflict_detection(memory_stream_one_way_pair()), "BusyResourceError"),
    ],
)
async def test_broken_streams_fail(
    factory: Callable[[], tuple[SendStream, ReceiveStream]], message: str
) -> None:
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await check_one_way_stream(_maker(factory), None)


async def test_half_close_violations_fail() -> None:
    # A "half-closeable" stream whose send_eof closes the receive side too.
    class ClosesEverything(nursery_io.abc.HalfCloseableStream):
        def __init__(self, stapled: nursery_io.StapledStream[Any, Any]) -> None:
            self.stapled = stapled  # StapledStream is final, as in Trio: wrap it

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await self.stapled.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            await self.stapled.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            return await self.stapled.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.stapled.aclose()

        async def send_eof(self) -> None:
            await self.aclose()

    async def maker() -> Any:
        a, b = memory_stream_pair()
        return ClosesEverything(a), b

    with pytest.raises(AssertionError):
        await check_half_closeable_stream(maker, None)


async def test_unclogged_stream_passed_as_clogged_fails() -> None:
    with pytest.raises(AssertionError, match="did not block"):
        await check_one_way_stream(one_way_memory, one_way_memory)
