"""Differences found by running trio-websocket's and Hypercorn's own test suites in trio
mode, each reduced to a side-by-side scenario (or a per-library check) against Trio 0.35.
"""

from __future__ import annotations

from types import ModuleType

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


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    assert_same_trace(scenario)
