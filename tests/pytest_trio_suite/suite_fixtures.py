"""Async fixtures: concurrency, dependencies, nurseries across the yield, contexts."""

import contextvars

import pytest
import trio
import trio.testing
from pytest_trio import trio_fixture

# ----- fixtures that need each other's setup to be concurrent -----


@pytest.fixture
def handshake():
    return trio.Event()


@pytest.fixture
async def waits_for_peer(handshake):
    # Set up sequentially, with this fixture first, the test would deadlock: the event
    # is set by `sets_for_peer`, which nothing makes wait for this one.
    with trio.fail_after(10):
        await handshake.wait()
    return "saw the handshake"


@pytest.fixture
async def sets_for_peer(handshake):
    await trio.sleep(1)
    handshake.set()
    return "set the handshake"


async def test_independent_fixtures_set_up_concurrently(
    waits_for_peer, sets_for_peer, autojump_clock
):
    assert waits_for_peer == "saw the handshake"
    assert sets_for_peer == "set the handshake"
    assert trio.current_time() == 1


@pytest.fixture
async def slow_a(log):
    log.append("a starts")
    await trio.sleep(2)
    log.append("a ready")
    yield
    await trio.sleep(2)
    log.append("a torn down")


@pytest.fixture
async def slow_b(log):
    log.append("b starts")
    await trio.sleep(3)
    log.append("b ready")
    yield
    await trio.sleep(1)
    log.append("b torn down")


@pytest.fixture
def teardown_report(log):
    # A plain fixture set up before the async ones: its teardown sees theirs.
    yield
    # Trio starts tasks of one batch in any order: "a starts" and "b starts" may swap.
    assert set(log[:2]) == {"a starts", "b starts"}, log
    assert log[2:] == ["a ready", "b ready", "test at 3", "b torn down", "a torn down"], log


async def test_setup_and_teardown_overlap(teardown_report, slow_a, slow_b, log, autojump_clock):
    # Both setups overlap (ready at 3, not 5); teardowns overlap too (checked by
    # `teardown_report` once they are over).
    log.append(f"test at {trio.current_time():g}")


# ----- a dependency chain -----


@pytest.fixture
async def database(log):
    log.append("database up")
    yield "db"
    log.append("database down")


@pytest.fixture
async def repository(database, log):
    log.append(f"repository up on {database}")
    yield "repo"
    await trio.sleep(0)
    log.append("repository down")


@pytest.fixture
def service(repository, log):
    # A plain fixture that uses an async one runs inside the run too.
    log.append(f"service up on {repository}")
    yield "service"
    log.append("service down")


@pytest.fixture
def chain_report(log):
    yield
    assert log == [
        "database up",
        "repository up on db",
        "service up on repo",
        "test",
        "service down",
        "repository down",
        "database down",
    ], log


async def test_dependency_chain_in_order(chain_report, service, log):
    log.append("test")
    assert service == "service"


# ----- nurseries across the yield -----


@pytest.fixture
async def ticker():
    ticks = []

    async def tick():
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        yield ticks
        nursery.cancel_scope.cancel()


async def test_fixture_background_task_runs_during_test(ticker, autojump_clock):
    await trio.sleep(4.5)
    assert ticker == [0, 1, 2, 3, 4]


async def test_echo_service(echo_service):
    assert await echo_service("ping") == ("echo", "ping")
    assert await echo_service("pong") == ("echo", "pong")


@pytest.fixture
def uses_nursery_fixture(nursery):
    started = trio.Event()

    async def background():
        started.set()
        await trio.sleep_forever()

    nursery.start_soon(background)
    return started


async def test_fixture_with_nursery_fixture(uses_nursery_fixture):
    await uses_nursery_fixture.wait()


# ----- trio_fixture, contexts, values -----


async def test_trio_fixture_runs_inside_the_run(run_started_at, mock_clock):
    assert run_started_at == 0
    mock_clock.jump(5)
    assert trio.current_time() == 5


request_id = contextvars.ContextVar("request_id", default="unset")


@pytest.fixture
async def sets_request_id():
    request_id.set("from the fixture")
    yield
    assert request_id.get() == "from the test"


async def test_context_is_shared_with_fixtures(sets_request_id):
    assert request_id.get() == "from the fixture"
    request_id.set("from the test")


async def test_context_is_fresh_per_test():
    assert request_id.get() == "unset"


@pytest.fixture
async def coroutine_value():
    await trio.sleep(0)
    return 42


@pytest.fixture(params=["x", "y"])
async def parametrized_value(request):
    await trio.sleep(0)
    return request.param * 2


async def test_async_fixture_values(coroutine_value, parametrized_value):
    assert coroutine_value == 42
    assert parametrized_value in ("xx", "yy")


@trio_fixture
async def trio_fixture_coroutine():
    await trio.sleep(0)
    return "async trio_fixture"


async def test_async_trio_fixture(trio_fixture_coroutine):
    assert trio_fixture_coroutine == "async trio_fixture"
