"""Tests picked up by trio_mode, the trio marker, classes, parametrize and outcomes."""

import pytest
import sniffio
import trio


async def test_async_test_runs_under_trio():
    await trio.sleep(0)
    assert trio.lowlevel.current_task() is not None


async def test_sniffio_says_trio():
    assert sniffio.current_async_library() == "trio"


def test_sync_test_runs_normally():
    with pytest.raises(RuntimeError):
        trio.current_time()


async def test_assertion_failure():
    await trio.sleep(0)
    value = 1
    assert value == 2


@pytest.mark.trio
async def test_explicit_marker():
    await trio.sleep(0)


class TestMethods:
    async def test_async_method(self):
        await trio.sleep(0)

    def test_sync_method(self):
        pass


@pytest.mark.parametrize("delay", [0, 0.001, 0.002])
async def test_parametrized(delay):
    await trio.sleep(delay)


async def test_skip_from_a_child_task():
    async def child():
        await trio.sleep(0)
        pytest.skip("skipped in a child task")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)


@pytest.mark.xfail(raises=ZeroDivisionError, strict=True)
async def test_expected_failure_arrives_in_a_group():
    # pytest-trio reports the test's error wrapped in an exception group, which
    # `raises=ZeroDivisionError` doesn't match: this is reported as a failure.
    await trio.sleep(0)
    1 / 0


@pytest.mark.xfail(strict=True)
async def test_expected_failure():
    await trio.sleep(0)
    1 / 0


async def test_two_children_fail():
    async def fail(exc):
        raise exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fail, ValueError("one"))
        nursery.start_soon(fail, KeyError("two"))


async def test_nursery_fixture_runs_background_tasks(nursery):
    done = trio.Event()

    async def background():
        await trio.sleep(0)
        done.set()

    nursery.start_soon(background)
    await done.wait()


async def test_nursery_fixture_task_crash_fails_the_test(nursery):
    async def crash():
        raise RuntimeError("background task of the test crashed")

    nursery.start_soon(crash)
    await trio.sleep_forever()


async def test_memory_channel_fixture(memory_channel):
    send, receive = memory_channel
    await send.send("hello")
    assert await receive.receive() == "hello"
