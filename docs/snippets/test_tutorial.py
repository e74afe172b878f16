from collections.abc import AsyncIterator
from functools import partial

import pytest

import nursery_io
from nursery_io.testing import open_stream_to_socket_listener, wait_all_tasks_blocked


async def test_sleep_takes_no_real_time(autojump_clock: nursery_io.testing.MockClock) -> None:
    # With autojump_clock, virtual time jumps ahead whenever every task is waiting.
    start = nursery_io.current_time()
    await nursery_io.sleep(3600)
    assert nursery_io.current_time() - start == 3600


async def test_timeout(autojump_clock: nursery_io.testing.MockClock) -> None:
    with pytest.raises(nursery_io.TooSlowError), nursery_io.fail_after(30):
        await nursery_io.sleep_forever()


async def test_background_task(nursery: nursery_io.Nursery) -> None:
    # The `nursery` fixture: tasks started in it are cancelled when the test ends.
    results: list[str] = []

    async def worker() -> None:
        results.append("started")
        await nursery_io.sleep_forever()

    nursery.start_soon(worker)
    await wait_all_tasks_blocked()  # until the worker is parked in sleep_forever
    assert results == ["started"]


async def echo(stream: nursery_io.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


@pytest.fixture
async def echo_listener() -> AsyncIterator[nursery_io.SocketListener]:
    # An async fixture may keep a nursery open while the test runs.
    async with nursery_io.open_nursery() as nursery:
        serve = partial(nursery_io.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo, 0)
        yield listeners[0]
        nursery.cancel_scope.cancel()


async def test_echo(echo_listener: nursery_io.SocketListener) -> None:
    async with await open_stream_to_socket_listener(echo_listener) as stream:
        await stream.send_all(b"ping")
        assert await stream.receive_some() == b"ping"


# Without nursery_io_mode, mark each async test explicitly:
@pytest.mark.nursery_io
async def test_marked() -> None:
    await nursery_io.sleep(0)
