"""Clocks and timeouts."""

import pytest
import trio
import trio.testing


async def test_autojump_clock_skips_sleeps(autojump_clock):
    assert trio.current_time() == 0
    for seconds in (1, 10, 1000):
        start = trio.current_time()
        await trio.sleep(seconds)
        assert trio.current_time() - start == seconds


async def test_mock_clock_stands_still(mock_clock):
    assert trio.current_time() == 0
    mock_clock.jump(3)
    assert trio.current_time() == 3
    with trio.move_on_after(1) as scope:
        mock_clock.jump(2)
        await trio.sleep(10)
    assert scope.cancelled_caught


async def test_any_clock_argument_is_the_runs_clock(fast_clock):
    assert trio.lowlevel.current_clock() is fast_clock
    await trio.sleep(3600)
    assert trio.current_time() == 3600


async def test_fail_after_raises_too_slow(autojump_clock):
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(5):
            await trio.sleep_forever()
    assert trio.current_time() == 5


async def test_fail_after_uncaught_fails_the_test(autojump_clock):
    with trio.fail_after(5):
        await trio.sleep(6)


async def test_move_on_after_with_real_clock():
    start = trio.current_time()
    with trio.move_on_after(0.05) as scope:
        await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() - start >= 0.05


async def test_deadline_in_a_fixture_covers_the_test(deadline_fixture, autojump_clock):
    await trio.sleep(100)


@pytest.fixture
async def deadline_fixture():
    # A cancel scope entered in a fixture and left open across its yield: its deadline
    # cancels the fixture's task, not the test, which is then cancelled by the crash.
    with trio.fail_after(10):
        yield


class TestOverriddenClock:
    @pytest.fixture
    def autojump_clock(self):
        # Overrides the built-in fixture of that name for this class.
        return trio.testing.MockClock(rate=0, autojump_threshold=0.001)

    async def test_override_is_used(self, autojump_clock):
        assert trio.lowlevel.current_clock() is autojump_clock
        assert autojump_clock.autojump_threshold == 0.001
        await trio.sleep(50)
        assert trio.current_time() == 50
