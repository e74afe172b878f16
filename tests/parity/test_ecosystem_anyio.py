"""What anyio's trio backend (and httpcore's trio backend) rely on, side by side with Trio.

In trio mode those backends drive nursery_io through trio's public API. anyio's own suite
and httpcore's and httpx's pass there; these scenarios pin the differences that probing the
same calls found, so they stay fixed: exception texts a caller can see, compared the way
tests/parity/test_net.py does (Trio's message must be contained in ours, "nursery_io" read
as "trio").
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Callable
from types import ModuleType

from . import harness
from .harness import Raised, Scenario, Scenarios, Trace, assert_same_trace, same_under_both

scenario = Scenarios()


def raised(exc: BaseException) -> Raised:
    return Raised.from_exception(exc, str(exc).replace("nursery_io", "trio"))


@scenario
async def second_waiter_on_one_fd(lib: ModuleType) -> Trace:
    """anyio's ``wait_readable``/``wait_writable`` and trio sockets: a second task waiting
    for the same fd and direction gets BusyResourceError, with Trio's text."""
    trace: Trace = []
    left, right = stdlib_socket.socketpair()
    # Fill the send buffer so that waiting for writability blocks too.
    left.setblocking(False)
    try:
        while True:
            left.send(b"x" * 65536)
    except BlockingIOError:
        pass
    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.lowlevel.wait_readable, left)
            nursery.start_soon(lib.lowlevel.wait_writable, left)
            await lib.testing.wait_all_tasks_blocked()
            for wait in (lib.lowlevel.wait_readable, lib.lowlevel.wait_writable):
                trace.append(await harness.outcome(lambda: wait(left), raised))
            nursery.cancel_scope.cancel()
    finally:
        left.close()
        right.close()
    return trace


@scenario
async def second_receiver_on_one_trio_socket(lib: ModuleType) -> Trace:
    trace: Trace = []
    first, second = lib.socket.socketpair()
    with first, second:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(first.recv, 10)
            await lib.testing.wait_all_tasks_blocked()
            trace.append(await harness.outcome(lambda: first.recv(10), raised))
            await second.send(b"x")
    return trace


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    assert_same_trace(scenario)


def test_calls_into_a_finished_run() -> None:
    """anyio's ``from_thread`` and portals turn RunFinishedError into their own; what a
    token of a finished run raises, with Trio's text."""

    def observe(lib: ModuleType) -> Trace:
        tokens = []

        async def main() -> None:
            tokens.append(lib.lowlevel.current_trio_token())

        async def never_run() -> None:
            raise AssertionError("ran after its run finished")

        lib.run(main)
        token = tokens[0]
        calls: list[Callable[[], object]] = [
            lambda: token.run_sync_soon(print),
            lambda: lib.from_thread.run_sync(print, trio_token=token),
            lambda: lib.from_thread.run(never_run, trio_token=token),
        ]
        return [harness.sync_outcome(call, raised) for call in calls]

    same_under_both(observe)


@scenario
async def a_run_inside_a_run(lib: ModuleType) -> Trace:
    """anyio's ``start_blocking_portal`` from async code starts a second run in another
    thread; one started in the run's own thread is refused, with Trio's text."""

    async def nothing() -> None:
        raise AssertionError("ran inside another run")

    def guest_run() -> None:
        lib.lowlevel.start_guest_run(nothing, run_sync_soon_threadsafe=print, done_callback=print)

    return [
        harness.sync_outcome(lambda: lib.run(nothing), raised),
        harness.sync_outcome(guest_run, raised),
    ]


def test_raised_needs_trios_text() -> None:
    # The comparison these scenarios rest on: a different text is a difference.
    trio_says = Raised("BusyResourceError", "another task is already reading / writing this fd")
    trio_says = Raised(trio_says.type_name, trio_says.message, by_trio=True)
    assert Raised("BusyResourceError", "another task is already waiting to read") != trio_says
    assert Raised("BusyResourceError", trio_says.message + " (a hint)") == trio_says
