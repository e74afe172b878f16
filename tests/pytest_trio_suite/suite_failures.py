"""Failures in fixtures and tests, and misuse: how each is reported."""

import pytest
import trio
from pytest_trio import trio_fixture


@pytest.fixture
async def setup_fails():
    await trio.sleep(0)
    raise KeyError("setup failed")
    yield


async def test_async_fixture_setup_fails(setup_fails):
    raise AssertionError("not reached")


@pytest.fixture
async def teardown_fails():
    yield "value"
    await trio.sleep(0)
    raise OSError("teardown failed")


async def test_async_fixture_teardown_fails(teardown_fails):
    assert teardown_fails == "value"


async def test_test_and_teardown_both_fail(teardown_fails):
    raise ZeroDivisionError("the test failed too")


@pytest.fixture
async def crashes_in_background():
    async def crash():
        await trio.sleep(1)
        raise ValueError("background task crashed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(crash)
        yield


cancelled_tests = []


async def test_background_crash_cancels_the_test(crashes_in_background, autojump_clock):
    try:
        await trio.sleep_forever()
    finally:
        cancelled_tests.append("cancelled")


def test_the_crashed_test_was_cancelled():
    assert cancelled_tests == ["cancelled"]


slow_setups = []


@pytest.fixture
async def slow_setup():
    try:
        await trio.sleep(100)
    except trio.Cancelled:
        slow_setups.append("cancelled by the other fixture's failure")
        raise
    yield


async def test_setup_failure_cancels_other_setups(slow_setup, setup_fails, autojump_clock):
    raise AssertionError("not reached")


def test_the_other_setup_was_cancelled():
    assert slow_setups == ["cancelled by the other fixture's failure"]


@pytest.fixture
async def cancels_quietly():
    with trio.CancelScope() as scope:
        scope.cancel()
        yield


async def test_fixture_cancels_the_test_without_an_error(cancels_quietly):
    await trio.sleep_forever()


@pytest.fixture
async def yields_twice():
    yield 1
    yield 2


async def test_fixture_yields_twice(yields_twice):
    pass


@pytest.fixture
def sync_setup_fails():
    raise LookupError("plain fixture setup failed")


async def test_plain_fixture_setup_fails(sync_setup_fails):
    pass


@pytest.fixture
def sync_teardown_fails():
    yield
    raise LookupError("plain fixture teardown failed")


async def test_plain_fixture_teardown_fails(sync_teardown_fails):
    await trio.sleep(0)


@trio_fixture
def needs_the_run():
    return trio.current_time()


def test_sync_test_uses_trio_fixture(needs_the_run):
    # (A fixture of its own: under pytest-trio, a fixture whose setup was refused this way
    # is left in a state that breaks it for later tests.)
    pass


@pytest.fixture
async def async_fixture_for_sync_test():
    return 1


def test_sync_test_uses_async_fixture(async_fixture_for_sync_test):
    pass


@pytest.fixture(scope="module")
async def module_scoped_async_fixture():
    return 1


async def test_module_scoped_async_fixture(module_scoped_async_fixture):
    pass


@trio_fixture
def trio_fixture_fails():
    raise RuntimeError("trio_fixture failed inside the run")


async def test_trio_fixture_fails(trio_fixture_fails):
    pass


@pytest.mark.trio
def test_sync_test_with_trio_marker():
    pass


async def test_two_clocks(mock_clock, fast_clock):
    pass
