"""Differences found by running trio-websocket's and Hypercorn's own test suites in trio
mode, each reduced to a side-by-side scenario (or a per-library check) against Trio 0.35.
"""

from __future__ import annotations

import os
import ssl
from types import ModuleType
from typing import Any

from .harness import Scenario, Scenarios, Trace, assert_same_trace

scenario = Scenarios(autojump=True)


# ----- socket readiness on virtual time -----
# trio-websocket's test_client_open_timeout and test_open_websocket_internal_exc: on a
# MockClock, a server task's send woke its client a turn late, so an error raised by the
# server reached the test before the client saw the server's answer.


@scenario
async def send_wakes_the_reader_in_the_next_batch(lib: ModuleType) -> Trace:
    # Trio polls for I/O after every batch: the reader runs in the batch right after the
    # send's, alongside the sender's next step (in either order). Several rounds, as the
    # first one may run slowly enough to hide a late poll.
    a, b = lib.socket.socketpair()
    steps_after_send = 0
    woke_at: list[int] = []

    async def reader() -> None:
        await a.recv(1)
        woke_at.append(steps_after_send)

    async def sender() -> None:
        nonlocal steps_after_send
        steps_after_send = 0
        await b.send(b"x")
        for _ in range(20):
            steps_after_send += 1
            await lib.lowlevel.checkpoint()

    with a, b:
        for _ in range(5):
            async with lib.open_nursery() as nursery:
                nursery.start_soon(reader)
                await lib.testing.wait_all_tasks_blocked()
                nursery.start_soon(sender)
    return [("the reader woke in the batch after the send", [n <= 1 for n in woke_at])]


# ----- attributes set on library objects -----
# Hypercorn's trio tests set ``transport_stream`` on a StapledStream (to mock its socket);
# tests also monkeypatch methods on a stream or lock instance. Trio's classes keep a
# ``__dict__`` for that, so ours must too.


async def _objects_that_take_attributes(lib: ModuleType, fds: list[Any]) -> dict[str, Any]:
    """One instance of each class; what holds a descriptor goes into ``fds`` to be closed."""
    testing = lib.testing
    send_channel, receive_channel = lib.open_memory_channel(0)
    fds.extend([lib.socket.socket(), lib.socket.socket(), lib.socket.socket()])
    plain, connected, listening = fds
    fd_stream = lib.lowlevel.FdStream(os.open(os.devnull, os.O_RDONLY))
    fds.append(fd_stream)
    await listening.bind(("127.0.0.1", 0))
    listening.listen()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    return {
        "Lock": lib.Lock(),
        "StrictFIFOLock": lib.StrictFIFOLock(),
        "Semaphore": lib.Semaphore(1),
        "CapacityLimiter": lib.CapacityLimiter(1),
        "Condition": lib.Condition(),
        "MemorySendChannel": send_channel,
        "MemoryReceiveChannel": receive_channel,
        "StapledStream": lib.StapledStream(
            testing.MemorySendStream(), testing.MemoryReceiveStream()
        ),
        "MemorySendStream": testing.MemorySendStream(),
        "MemoryReceiveStream": testing.MemoryReceiveStream(),
        "socket": plain,
        "SocketStream": lib.SocketStream(connected),
        "SocketListener": lib.SocketListener(listening),
        "SSLStream": lib.SSLStream(testing.MemorySendStream(), context, server_side=True),
        "SSLListener": lib.SSLListener(lib.SocketListener(listening), context),
        "FdStream": fd_stream,
    }


@scenario
async def objects_take_attributes_of_the_user(lib: ModuleType) -> Trace:
    trace: Trace = []
    fds: list[Any] = []
    try:
        for name, obj in (await _objects_that_take_attributes(lib, fds)).items():
            try:
                obj.transport_stream = "set by a test"
                # A monkeypatched method: what a mock replaces on an instance.
                obj.receive = "patched"
            except AttributeError as exc:
                trace.append((name, "AttributeError", str(exc)))
            else:
                trace.append((name, obj.transport_stream, obj.receive))
    finally:
        for fd in fds:
            type(fd).close(fd)
    return trace


@scenario
async def task_status_started_can_be_wrapped(lib: ModuleType) -> Trace:
    # tricycle's service nursery replaces ``task_status.started`` on the instance with a
    # wrapper, to act when the task reports it started.
    trace: Trace = []

    async def child(*, task_status: Any) -> None:
        original = task_status.started

        def started(value: object = None) -> None:
            trace.append(("wrapper called with", value))
            original(value)

        try:
            task_status.started = started
        except AttributeError as exc:
            trace.append(("AttributeError", str(exc)))
            task_status.started("unwrapped")
        else:
            task_status.started("wrapped")

    async with lib.open_nursery() as nursery:
        trace.append(("start returned", await nursery.start(child)))
    return trace


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    assert_same_trace(scenario)
