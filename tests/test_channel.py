"""Tests for memory channels (nursery_io._channel)."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nursery_io
from nursery_io import (
    BrokenResourceError,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    MemoryChannelStatistics,
    MemoryReceiveChannel,
    MemorySendChannel,
    WouldBlock,
    open_memory_channel,
)
from nursery_io.lowlevel import checkpoint
from nursery_io.testing import assert_checkpoints, wait_all_tasks_blocked

BUFFER_SIZES = [0, 1, 3, math.inf]


def test_open_memory_channel_validation() -> None:
    for bad_type in (1.5, "1", None, 2.0):
        with pytest.raises(TypeError):
            open_memory_channel(bad_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        open_memory_channel(-1)
    with pytest.raises(TypeError, match="no public constructor"):
        MemorySendChannel()
    with pytest.raises(TypeError, match="no public constructor"):
        MemoryReceiveChannel()
    # Subscripting names the item type, as in Trio; it still returns a plain pair.
    s, r = open_memory_channel[int](math.inf)
    assert isinstance(s, MemorySendChannel)
    assert isinstance(r, MemoryReceiveChannel)
    assert isinstance(s, nursery_io.abc.SendChannel)
    assert isinstance(r, nursery_io.abc.ReceiveChannel)
    assert "send channel" in repr(s)
    assert "receive channel" in repr(r)


@pytest.mark.parametrize("size", BUFFER_SIZES)
async def test_send_receive_order(size: float) -> None:
    s, r = open_memory_channel[int](size)
    received: list[int] = []

    async def consumer() -> None:
        async for value in r:
            received.append(value)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(consumer)
        async with s:
            for i in range(50):
                await s.send(i)
    assert received == list(range(50))
    with pytest.raises(EndOfChannel):
        await r.receive()


async def test_nowait_and_statistics() -> None:
    s, r = open_memory_channel[str](2)
    assert s.statistics() == MemoryChannelStatistics(
        current_buffer_used=0,
        max_buffer_size=2,
        open_send_channels=1,
        open_receive_channels=1,
        tasks_waiting_send=0,
        tasks_waiting_receive=0,
        peak_buffer_used=0,
    )
    with pytest.raises(WouldBlock):
        r.receive_nowait()
    s.send_nowait("a")
    s.send_nowait("b")
    with pytest.raises(WouldBlock):
        s.send_nowait("c")
    assert r.statistics().current_buffer_used == 2
    assert r.receive_nowait() == "a"
    s.send_nowait("c")
    assert [r.receive_nowait(), r.receive_nowait()] == ["b", "c"]
    assert s.statistics().peak_buffer_used == 2

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(r.receive)
        nursery.start_soon(r.receive)
        await wait_all_tasks_blocked()
        assert s.statistics().tasks_waiting_receive == 2
        s.send_nowait("x")
        s.send_nowait("y")
        # Values went straight to the waiting receivers, not through the buffer.
        assert s.statistics().current_buffer_used == 0
    assert s.statistics().peak_buffer_used == 2

    s0, r0 = open_memory_channel[int](0)
    with pytest.raises(WouldBlock):
        s0.send_nowait(1)
    async with nursery_io.open_nursery() as nursery:
        for value in (1, 2):
            nursery.start_soon(s0.send, value)
            await wait_all_tasks_blocked()  # queue up in a known order
        stats = r0.statistics()
        assert (stats.tasks_waiting_send, stats.current_buffer_used) == (2, 0)
        assert r0.receive_nowait() == 1
        assert r0.receive_nowait() == 2
    assert r0.statistics().peak_buffer_used == 0


@pytest.mark.parametrize("size", [0, 1])
async def test_fifo_fairness(size: int) -> None:
    s, r = open_memory_channel[tuple[str, int]](size)
    got: list[tuple[int, tuple[str, int]]] = []

    async def receiver(i: int) -> None:
        got.append((i, await r.receive()))

    async with nursery_io.open_nursery() as nursery:
        # Receivers queue up in order 0..4 and are served in that order.
        for i in range(5):
            nursery.start_soon(receiver, i)
            await wait_all_tasks_blocked()
        for i in range(5):
            await s.send(("v", i))
    assert got == [(i, ("v", i)) for i in range(5)]

    async with nursery_io.open_nursery() as nursery:
        # Senders queue up (after filling the buffer) and are taken in order.
        for i in range(5 + size):
            nursery.start_soon(s.send, ("w", i))
            await wait_all_tasks_blocked()
        assert s.statistics().tasks_waiting_send == 5
        values = [await r.receive() for _ in range(5 + size)]
    assert values == [("w", i) for i in range(5 + size)]


async def test_checkpoints() -> None:
    s, r = open_memory_channel[int](1)
    with assert_checkpoints():
        await s.send(1)
    with assert_checkpoints():
        assert await r.receive() == 1
    with assert_checkpoints():
        await s.aclose()
    with assert_checkpoints():
        await r.aclose()

    # A pending cancellation is honoured *before* acting: nothing is sent or taken.
    s, r = open_memory_channel[int](1)
    with CancelScope() as scope:
        scope.cancel()
        await s.send(1)
    assert scope.cancelled_caught
    assert s.statistics().current_buffer_used == 0
    s.send_nowait(2)
    with CancelScope() as scope:
        scope.cancel()
        await r.receive()
    assert scope.cancelled_caught
    assert r.receive_nowait() == 2


@pytest.mark.parametrize("size", BUFFER_SIZES)
async def test_close_send_side(size: float) -> None:
    s, r = open_memory_channel[int](size)
    if size:
        s.send_nowait(1)
    with s:
        pass
    # Idempotent; closed ends refuse everything.
    s.close()
    await s.aclose()
    for attempt in (lambda: s.send_nowait(1), s.clone):
        with pytest.raises(ClosedResourceError):
            attempt()
    with pytest.raises(ClosedResourceError):
        await s.send(1)
    # The buffer is drained before the end is reported, and the end is sticky.
    if size:
        assert await r.receive() == 1
    for _ in range(2):
        with pytest.raises(EndOfChannel):
            r.receive_nowait()
        with pytest.raises(EndOfChannel):
            await r.receive()
    assert [v async for v in r] == []


@pytest.mark.parametrize("size", BUFFER_SIZES)
async def test_close_receive_side(size: float) -> None:
    s, r = open_memory_channel[int](size)
    if size:
        s.send_nowait(1)
    async with r:
        pass
    r.close()
    # Buffered values are discarded; senders learn the other side is gone.
    assert r.statistics().current_buffer_used == 0
    with pytest.raises(BrokenResourceError):
        s.send_nowait(2)
    with pytest.raises(BrokenResourceError):
        await s.send(2)
    with pytest.raises(ClosedResourceError):
        r.receive_nowait()
    with pytest.raises(ClosedResourceError):
        await r.receive()
    with pytest.raises(ClosedResourceError):
        r.clone()
    # Closing the send side too is fine, and its own misuse still says "closed".
    s.close()
    with pytest.raises(ClosedResourceError):
        s.send_nowait(2)


async def test_close_wakes_blocked_tasks() -> None:
    # Closing an end wakes the tasks blocked on *that end* with ClosedResourceError.
    s, r = open_memory_channel[int](0)
    results: list[str] = []

    async def do(label: str, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except Exception as exc:
            results.append(f"{label}:{type(exc).__name__}")
        else:
            results.append(f"{label}:ok")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(do, "recv", r.receive)
        await wait_all_tasks_blocked()
        r.close()
    s, r = open_memory_channel[int](0)
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(do, "send", functools.partial(s.send, 1))
        await wait_all_tasks_blocked()
        s.close()
    assert results == ["recv:ClosedResourceError", "send:ClosedResourceError"]

    # Closing the *last* end of one side wakes the other side's blocked tasks.
    s, r = open_memory_channel[int](0)
    results.clear()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(do, "recv", r.receive)
        await wait_all_tasks_blocked()
        await s.aclose()
    s, r = open_memory_channel[int](0)
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(do, "send", functools.partial(s.send, 1))
        await wait_all_tasks_blocked()
        await r.aclose()
    assert results == ["recv:EndOfChannel", "send:BrokenResourceError"]


async def test_clone_semantics() -> None:
    s, r = open_memory_channel[int](math.inf)
    s2 = s.clone()
    r2 = r.clone()
    stats = s.statistics()
    assert (stats.open_send_channels, stats.open_receive_channels) == (2, 2)
    results: list[str] = []

    async def blocked_receive(channel: MemoryReceiveChannel[int], label: str) -> None:
        try:
            results.append(f"{label}:{await channel.receive()}")
        except Exception as exc:
            results.append(f"{label}:{type(exc).__name__}")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(blocked_receive, r, "r")
        await wait_all_tasks_blocked()
        nursery.start_soon(blocked_receive, r2, "r2")
        await wait_all_tasks_blocked()
        # Closing r2 only affects the task blocked on r2.
        r2.close()
        await wait_all_tasks_blocked()
        assert results == ["r2:ClosedResourceError"]
        assert r.statistics().tasks_waiting_receive == 1
        # Closing one send clone doesn't end the channel.
        s.close()
        await wait_all_tasks_blocked()
        assert r.statistics().tasks_waiting_receive == 1
        with pytest.raises(ClosedResourceError):
            await s.send(1)
        await s2.send(7)
    assert results == ["r2:ClosedResourceError", "r:7"]
    # A clone made from an open end works after the original closes.
    s3 = s2.clone()
    s2.close()
    s3.send_nowait(8)
    assert r.receive_nowait() == 8
    s3.close()
    with pytest.raises(EndOfChannel):
        r.receive_nowait()
    stats = r.statistics()
    assert (stats.open_send_channels, stats.open_receive_channels) == (0, 1)
    # Values are shared between receive clones, each delivered once.
    s, r = open_memory_channel[int](math.inf)
    r2 = r.clone()
    for i in range(4):
        s.send_nowait(i)
    assert [r.receive_nowait(), r2.receive_nowait(), r.receive_nowait()] == [0, 1, 2]
    r.close()
    s.send_nowait(4)  # r2 is still open
    assert [r2.receive_nowait(), r2.receive_nowait()] == [3, 4]
    r2.close()
    with pytest.raises(BrokenResourceError):
        s.send_nowait(5)


@pytest.mark.parametrize("size", [0, 1])
async def test_cancel_after_handoff_keeps_value(size: int) -> None:
    # Once a value has been handed over, cancelling the receiver can't lose it...
    s, r = open_memory_channel[str](size)
    got: list[str] = []
    scope = CancelScope()

    async def receiver() -> None:
        with scope:
            got.append(await r.receive())

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        s.send_nowait("precious")
        scope.cancel()
    assert got == ["precious"]
    assert not scope.cancelled_caught

    # ... and cancelling a sender whose value was taken can't make it look unsent.
    for _ in range(size):
        s.send_nowait("filler")
    sent: list[str] = []
    scope = CancelScope()

    async def sender() -> None:
        with scope:
            await s.send("taken")
            sent.append("taken")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sender)
        await wait_all_tasks_blocked()
        assert s.statistics().tasks_waiting_send == 1
        values = [r.receive_nowait() for _ in range(size + 1)]
        scope.cancel()
    assert values[-1] == "taken"
    assert sent == ["taken"]
    assert not scope.cancelled_caught


@pytest.mark.parametrize("size", [0, 1])
async def test_cancel_right_after_fast_path(size: int) -> None:
    # The side that completes an operation without blocking still yields afterwards; a
    # cancellation arriving during that yield must not undo the completed operation.
    s, r = open_memory_channel[str](size)
    log: list[str] = []
    sender_scope = CancelScope()

    async def receiver() -> None:
        log.append(await r.receive())
        # Runs before the sender resumes from the yield after its hand-off.
        sender_scope.cancel()

    async def sender() -> None:
        with sender_scope:
            await s.send("a")
            log.append("sent")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        nursery.start_soon(sender)
    assert sorted(log) == ["a", "sent"]

    # Mirror image: a receiver takes a parked sender's value on its fast path.
    for _ in range(size):
        s.send_nowait("filler")
    receiver_scope = CancelScope()
    log.clear()

    async def blocked_sender() -> None:
        await s.send("b")
        log.append("sent")
        receiver_scope.cancel()

    async def fast_receiver() -> None:
        with receiver_scope:
            for _ in range(size + 1):
                log.append(await r.receive())

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(blocked_sender)
        await wait_all_tasks_blocked()
        nursery.start_soon(fast_receiver)
    # With a buffer, the cancellation may stop the receiver before it reaches "b"; then
    # "b" must still be in the channel. Either way it exists exactly once.
    leftover = []
    while r.statistics().current_buffer_used:
        leftover.append(r.receive_nowait())
    assert (log + leftover).count("b") == 1
    assert "sent" in log


@pytest.mark.parametrize("size", [0, 2])
async def test_cancelled_blocked_operations_leave_no_trace(size: int) -> None:
    s, r = open_memory_channel[int](size)
    for i in range(size):
        s.send_nowait(i)
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(s.send, 100)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert s.statistics().tasks_waiting_send == 0
    assert [r.receive_nowait() for _ in range(size)] == list(range(size))
    with pytest.raises(WouldBlock):
        r.receive_nowait()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(r.receive)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert r.statistics().tasks_waiting_receive == 0
    with pytest.raises(WouldBlock):
        s.send_nowait(1) if size == 0 else [s.send_nowait(i) for i in range(size + 1)]


# ----- randomized: no value is ever lost or duplicated -----

# Each task may, right after its own operation completes, cancel another task's scope:
# that is how a cancellation lands in the window between a hand-off and the moment the
# other side runs again.
_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(-1, 20)),
        st.tuples(st.just("receive"), st.integers(0, 2), st.integers(-1, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
        st.tuples(st.just("close_clone"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("yield"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("settle"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


async def _random_scenario(size: float, actions: list[tuple[str, int, int]]) -> None:
    s, r = open_memory_channel[int](size)
    # Clone 0 of each side stays open until the end, so the channel never ends early.
    senders = [s, s.clone(), s.clone()]
    receivers = [r, r.clone(), r.clone()]
    scopes: list[CancelScope] = []
    sent_ok: list[int] = []
    received: list[int] = []
    next_value = 0

    def cancel_other(index: int) -> None:
        if index >= 0 and scopes:
            scopes[index % len(scopes)].cancel()

    async def send(
        channel: MemorySendChannel[int], value: int, scope: CancelScope, then_cancel: int
    ) -> None:
        with scope:
            try:
                await channel.send(value)
            except ClosedResourceError:
                return
            sent_ok.append(value)
            cancel_other(then_cancel)

    async def receive(
        channel: MemoryReceiveChannel[int], scope: CancelScope, then_cancel: int
    ) -> None:
        with scope:
            try:
                value = await channel.receive()
            except ClosedResourceError:
                return
            received.append(value)
            cancel_other(then_cancel)

    async with nursery_io.open_nursery() as nursery:
        for action, arg, then_cancel in actions:
            if action == "send":
                scope = CancelScope()
                scopes.append(scope)
                nursery.start_soon(send, senders[arg], next_value, scope, then_cancel)
                next_value += 1
            elif action == "receive":
                scope = CancelScope()
                scopes.append(scope)
                nursery.start_soon(receive, receivers[arg], scope, then_cancel)
            elif action == "cancel":
                cancel_other(arg)
            elif action == "close_clone":
                # Clones 1 and 2 may be closed: senders[1], senders[2], receivers[1/2].
                (senders + receivers)[[1, 2, 4, 5][arg]].close()
            elif action == "yield":
                for _ in range(arg):
                    await checkpoint()
            elif action == "settle":
                await wait_all_tasks_blocked()
        await wait_all_tasks_blocked()
        for scope in scopes:
            scope.cancel()
    # Everything still in the buffer was sent successfully.
    s.close()
    for extra in senders[1:]:
        extra.close()
    while True:
        try:
            received.append(r.receive_nowait())
        except EndOfChannel:
            break
    assert sorted(received) == sorted(sent_ok), (received, sent_ok)
    assert len(set(received)) == len(received)
    stats = r.statistics()
    assert (stats.tasks_waiting_send, stats.tasks_waiting_receive) == (0, 0)


@pytest.mark.parametrize("size", BUFFER_SIZES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_ACTIONS)
async def test_no_value_lost_or_duplicated(
    size: float, actions: list[tuple[str, int, int]]
) -> None:
    await _random_scenario(size, actions)
