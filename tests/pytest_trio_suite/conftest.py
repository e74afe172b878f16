"""Shared fixtures of the suite: plain pytest-trio style, nothing nursery_io-specific."""

import pytest
import trio
import trio.testing
from pytest_trio import trio_fixture


@pytest.fixture
def log():
    return []


@pytest.fixture
async def memory_channel():
    send, receive = trio.open_memory_channel(10)
    async with send, receive:
        yield send, receive


@pytest.fixture
async def echo_service():
    """A service with a background task, alive while the test runs."""
    requests_send, requests_receive = trio.open_memory_channel(0)
    replies_send, replies_receive = trio.open_memory_channel(0)

    async def serve():
        async for request in requests_receive:
            await replies_send.send(("echo", request))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)

        async def ask(request):
            await requests_send.send(request)
            return await replies_receive.receive()

        yield ask
        nursery.cancel_scope.cancel()


@trio_fixture
def run_started_at():
    # A trio_fixture: a plain function that needs the run (current_time).
    return trio.current_time()


@pytest.fixture
def fast_clock():
    # Not named like a built-in clock: pytest-trio uses any Clock among the test's arguments.
    return trio.testing.MockClock(autojump_threshold=0)
