"""Tests for nursery_io.pytest_plugin: mostly inner pytest sessions run with ``pytester``."""

from __future__ import annotations

import signal

import hypothesis  # noqa: F401  (see below)
import pytest

import nursery_io
from nursery_io.lowlevel import currently_ki_protected

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules each inner session imported; importing
# Hypothesis here once keeps every inner session from re-importing it (~0.5 s each).


def run_inner(
    pytester: pytest.Pytester, source: str, *args: str, mode: bool = True
) -> pytest.RunResult:
    pytester.makeini(
        "[pytest]\n"
        f"nursery_io_mode = {'true' if mode else 'false'}\n"
        "addopts = -p no:trio -p no:anyio -p no:cacheprovider\n"
        "xfail_strict = true\n"
    )
    pytester.makepyfile(source)
    return pytester.runpytest(*args)


# ----- which tests run under nursery_io -----


def test_marker_mode_runs_marked_tests_only(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, sniffio, nursery_io

        @pytest.mark.nursery_io
        async def test_marked():
            assert sniffio.current_async_library() == "nursery_io"
            await nursery_io.sleep(0)

        async def test_unmarked():
            pass

        def test_sync():
            assert not nursery_io.lowlevel.in_run()
        """,
        mode=False,
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*_ test_unmarked _*", "async def functions are not natively*"])


def test_ini_mode_runs_async_tests_and_leaves_other_frameworks_alone(
    pytester: pytest.Pytester,
) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        async def test_auto():
            assert nursery_io.lowlevel.in_run()
            await nursery_io.sleep(0)

        class TestClass:
            async def test_method(self):
                await nursery_io.sleep(0)

        @pytest.mark.trio
        async def test_for_trio():
            pass

        def test_sync():
            assert not nursery_io.lowlevel.in_run()
        """,
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    )
    # The trio-marked test isn't ours; with pytest-trio disabled pytest itself fails it.
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*_ test_for_trio _*", "async def functions are not natively*"])


def test_marker_with_custom_run_function(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from nursery_io.testing import MockClock

        calls = []

        def my_run(fn, *args, clock=None, instruments=()):
            calls.append((clock, list(instruments)))
            return nursery_io.run(fn, *args, clock=clock, instruments=instruments)

        @pytest.mark.nursery_io(run=my_run)
        async def test_custom(mock_clock):
            assert nursery_io.lowlevel.current_clock() is mock_clock

        def test_check():
            [(clock, instruments)] = calls
            assert isinstance(clock, MockClock) and instruments == []

        @pytest.mark.nursery_io(bogus=1)
        async def test_bad_marker():
            pass
        """,
        mode=False,
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*takes only the keyword argument run=, not bogus=1"])


def test_marked_sync_function_fails_but_module_mark_skips_sync_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_module_mark="""
        import pytest
        pytestmark = pytest.mark.nursery_io

        def test_plain_sync():
            pass

        async def test_async():
            pass
        """
    )
    result = run_inner(
        pytester,
        """
        import pytest

        @pytest.mark.nursery_io
        def test_not_async():
            pass
        """,
        mode=False,
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_not_async*is marked nursery_io but is not an 'async def'*"])


# ----- fixtures -----


def test_fixture_setup_and_teardown_order(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        @pytest.fixture
        def plain():
            log.append("plain up")
            yield "p"
            log.append("plain down")

        @pytest.fixture
        async def first(plain):
            log.append("first up")
            yield plain + "1"
            await nursery_io.sleep(0)
            log.append("first down")

        @pytest.fixture
        def sync_on_async(first):
            # A sync fixture that uses an async one is evaluated inside the run too.
            assert nursery_io.lowlevel.in_run()
            log.append("sync up")
            yield first + "s"
            log.append("sync down")

        @pytest.fixture
        async def second(sync_on_async):
            await nursery_io.sleep(0)
            log.append("second up")
            return sync_on_async + "2"

        @pytest.fixture
        async def third():
            log.append("third up")
            yield 3
            log.append("third down")

        async def test_uses(third, second, first):
            assert (first, second, third) == ("p1", "p1s2", 3)
            log.append("test")

        def before(a, b):
            return log.index(a) < log.index(b)

        def test_check():
            # Fixtures set up concurrently, each after what it uses, and tear down in
            # reverse dependency order; `third` depends on nothing and is free to go
            # anywhere in between. The sync `plain` is pytest's own, outside the run.
            assert sorted(log) == sorted([
                "plain up", "third up", "first up", "sync up", "second up", "test",
                "sync down", "first down", "third down", "plain down",
            ])
            assert log[0] == "plain up" and log[5] == "test" and log[-1] == "plain down"
            assert before("first up", "sync up") and before("sync up", "second up")
            assert before("sync down", "first down")
        """,
    )
    result.assert_outcomes(passed=2)


def test_fixtures_set_up_concurrently_each_after_what_it_uses(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        @pytest.fixture
        def handshake():
            return nursery_io.Event()

        @pytest.fixture
        async def waits(handshake):
            # Set up one at a time with this one first, this would never finish: the
            # event is set by `sets`, which doesn't depend on this fixture.
            with nursery_io.fail_after(10):
                await handshake.wait()
            log.append("waits ready")
            yield
            log.append("waits down")

        @pytest.fixture
        async def sets(handshake):
            await nursery_io.sleep(1)
            handshake.set()
            log.append("sets ready")
            yield
            await nursery_io.sleep(1)
            log.append("sets down")

        @pytest.fixture
        async def user(waits, sets):
            log.append("user ready")
            yield
            log.append("user down")

        async def test_it(user, autojump_clock):
            log.append(f"test at {nursery_io.current_time():g}")

        def test_check():
            assert log == [
                "sets ready", "waits ready", "user ready", "test at 1",
                "user down", "waits down", "sets down",
            ]
        """,
    )
    result.assert_outcomes(passed=2)


def test_nursery_io_fixture(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from nursery_io.pytest_plugin import nursery_io_fixture

        @nursery_io_fixture
        def started_at():
            # A plain function, but it runs inside the test's run.
            return nursery_io.current_time()

        @nursery_io_fixture
        async def also_async():
            await nursery_io.sleep(0)
            return "async"

        async def test_uses_it(started_at, also_async, mock_clock):
            assert started_at == 0 and also_async == "async"

        def test_plain_test_cannot(started_at):
            pass
        """,
        mode=False,
    )
    # Without nursery_io mode neither test is ours, so neither may use the fixture.
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*fixture 'started_at' must run inside nursery_io, but test "
            "'test_plain_test_cannot' is not a nursery_io test*",
            "*fixture 'started_at' must run inside nursery_io, but test "
            "'test_uses_it' is not a nursery_io test*",
        ]
    )
    pytester.makepyfile(
        test_marked="""
        import pytest, nursery_io
        from nursery_io.pytest_plugin import nursery_io_fixture

        @nursery_io_fixture
        def started_at():
            return nursery_io.current_time()

        @pytest.mark.nursery_io
        async def test_uses_it(started_at, mock_clock):
            assert started_at == 0
        """
    )
    pytester.runpytest("test_marked.py").assert_outcomes(passed=1)


def test_autouse_parametrized_and_class_fixtures(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        seen = []

        @pytest.fixture(autouse=True)
        async def auto():
            seen.append("auto")
            yield

        @pytest.fixture(params=[1, 2])
        async def num(request):
            await nursery_io.sleep(0)
            return request.param * 10

        async def test_param(num):
            seen.append(num)

        class TestInClass:
            @pytest.fixture
            async def method_fixture(self):
                return self

            async def test_method(self, method_fixture):
                assert method_fixture is self

        async def test_check():
            assert seen == ["auto", 10, "auto", 20, "auto", "auto"]
        """,
    )
    result.assert_outcomes(passed=4)


def test_background_task_of_fixture_runs_during_test(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from nursery_io.testing import wait_all_tasks_blocked

        @pytest.fixture
        async def ticker():
            ticks = []
            stop = []
            async def tick():
                try:
                    while True:
                        ticks.append(nursery_io.current_time())
                        await nursery_io.sleep(1)
                finally:
                    stop.append("cancelled")
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(tick)
                yield ticks
                nursery.cancel_scope.cancel()
            assert stop == ["cancelled"]

        async def test_ticks(ticker, autojump_clock):
            await nursery_io.sleep(5.5)
            assert len(ticker) == 6
        """,
    )
    result.assert_outcomes(passed=1)


def test_crash_in_fixture_background_task_cancels_test(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        @pytest.fixture
        async def flaky():
            async with nursery_io.open_nursery() as nursery:
                async def explode():
                    await nursery_io.sleep(1)
                    raise ValueError("background boom")
                nursery.start_soon(explode)
                yield
                log.append("teardown not reached normally")

        @pytest.fixture
        async def later():
            yield
            log.append("later torn down")

        async def test_waits(flaky, later, autojump_clock):
            try:
                await nursery_io.sleep_forever()
            except nursery_io.Cancelled:
                log.append("test cancelled")
                raise

        def test_check():
            assert log == ["test cancelled", "later torn down"]
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*in explode*",
            "*ValueError: background boom",
            "FAILED *test_waits*",
        ]
    )


def test_builtin_nursery_fixture(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        async def test_runs_tasks(nursery):
            async def forever():
                try:
                    await nursery_io.sleep_forever()
                finally:
                    log.append("cancelled at teardown")
            nursery.start_soon(forever)
            await nursery_io.sleep(0)

        async def test_task_crash_fails_test(nursery, autojump_clock):
            async def crash():
                raise KeyError("from nursery task")
            nursery.start_soon(crash)
            await nursery_io.sleep(10)
            log.append("not reached")

        def test_check():
            assert log == ["cancelled at teardown"]

        def test_sync_test_cannot_use_it(nursery):
            pass

        async def test_own_failure_is_not_wrapped(nursery):
            nursery.start_soon(nursery_io.sleep_forever)
            assert 1 == 2
        """,
    )
    result.assert_outcomes(passed=2, failed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*_ test_own_failure_is_not_wrapped _*", "", "nursery = <nursery_io.Nursery*"]
    )
    result.stdout.fnmatch_lines_random(
        [
            "E       assert 1 == 2",
            "*KeyError: 'from nursery task'*",
            "*fixture 'nursery' must run inside nursery_io, but test "
            "'test_sync_test_cannot_use_it' is not a nursery_io test*",
        ]
    )


def test_nursery_fixture_belongs_to_its_requester(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from nursery_io.testing import wait_all_tasks_blocked

        log = []

        async def until_cancelled(label):
            try:
                await nursery_io.sleep_forever()
            finally:
                log.append(label + " cancelled")

        @pytest.fixture
        def outer(nursery):
            nursery.start_soon(until_cancelled, "outer task")
            yield
            log.append("outer teardown")

        @pytest.fixture
        async def inner(outer, nursery):
            nursery.start_soon(until_cancelled, "inner task")
            yield
            log.append("inner teardown")

        async def test_it(inner, nursery):
            task = nursery_io.lowlevel.current_task()
            assert nursery.parent_task is task
            siblings = {t.name for t in task.parent_nursery.child_tasks}
            assert {"<fixture 'outer'>", "<fixture 'inner'>"} <= siblings
            nursery.start_soon(until_cancelled, "test task")
            await wait_all_tasks_blocked()
            log.append("test done")

        def test_check():
            assert log == [
                "test done", "test task cancelled",
                "inner teardown", "inner task cancelled",
                "outer teardown", "outer task cancelled",
            ]
        """,
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("style", ["nursery fixture", "own nursery"])
def test_background_crash_is_thrown_into_the_fixture(pytester: pytest.Pytester, style: str) -> None:
    if style == "nursery fixture":
        fixture = """
        @pytest.fixture
        def crashing(nursery):
            nursery.start_soon(crash_soon)
            with pytest.raises(nursery_io.Cancelled):
                yield
            deadlines["crashing"] = nursery_io.current_effective_deadline()
        """
    else:
        fixture = """
        @pytest.fixture
        async def crashing():
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(crash_soon)
                with pytest.raises(nursery_io.Cancelled):
                    yield
                deadlines["crashing"] = nursery_io.current_effective_deadline()
        """
    result = run_inner(
        pytester,
        """
        import math, pytest, nursery_io

        deadlines = {}
        ended_at = []

        async def crash_soon():
            await nursery_io.sleep(1)
            raise RuntimeError("CRASHED " + "IN BACKGROUND")
        """
        + fixture
        + """
        @pytest.fixture
        def user(crashing):
            yield
            deadlines["user"] = nursery_io.current_effective_deadline()

        async def test_waits(user, autojump_clock):
            try:
                await nursery_io.sleep_forever()
            finally:
                ended_at.append(nursery_io.current_time())

        def test_check():
            assert deadlines == {"crashing": -math.inf, "user": math.inf}
            assert ended_at == [1]
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: CRASHED IN BACKGROUND"])


def test_crash_under_nested_scopes_of_a_fixture(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import contextlib, pytest, nursery_io

        async def fail_now():
            raise RuntimeError("NESTED " + "FAILURE")

        @contextlib.asynccontextmanager
        async def slow_exit():
            try:
                yield
            finally:
                await nursery_io.sleep(0)

        @pytest.fixture
        async def layered(nursery):
            async with nursery_io.open_nursery() as outer:
                async with slow_exit():
                    async with nursery_io.open_nursery() as inner:
                        inner.start_soon(fail_now)
                        yield
                        outer.cancel_scope.cancel()

        async def test_blocked(layered):
            await nursery_io.sleep_forever()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: NESTED FAILURE"])


def test_crash_cancels_setup_in_progress_and_skips_the_rest(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        @pytest.fixture
        async def explodes():
            raise ValueError("EXPLODED")
            yield

        @pytest.fixture
        async def never_set_up():
            # Started in the same batch as `explodes`, in either order (batches run in a
            # random direction): its first checkpoint is where the crash cancels it.
            await nursery_io.lowlevel.checkpoint()
            log.append("never_set_up ran")
            yield

        async def test_setup_error_skips_later_fixtures(explodes, never_set_up):
            log.append("test ran")

        @pytest.fixture
        async def crashes_later():
            async with nursery_io.open_nursery() as nursery:
                async def crash():
                    await nursery_io.sleep(1)
                    raise ValueError("CRASHED LATER")
                nursery.start_soon(crash)
                yield

        @pytest.fixture
        async def slow_setup():
            try:
                await nursery_io.sleep_forever()
            finally:
                log.append("slow_setup cancelled")
            yield

        async def test_crash_during_setup(crashes_later, slow_setup, autojump_clock):
            log.append("test ran")

        def test_check():
            assert log == ["slow_setup cancelled"]
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(["*ValueError: EXPLODED", "*ValueError: CRASHED LATER"])
    result.stdout.no_fnmatch_line("*cancelled the test but didn't raise*")


def test_contextvars_from_fixtures_are_visible_in_test(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import contextvars, pytest, nursery_io

        var = contextvars.ContextVar("var", default="unset")
        other = contextvars.ContextVar("other", default="unset")

        @pytest.fixture
        async def sets_var():
            var.set("from async fixture")
            yield
            assert other.get() == "from test"

        @pytest.fixture
        def sync_sets(sets_var):
            other.set("from sync fixture")

        async def test_sees_it(sync_sets):
            assert var.get() == "from async fixture"
            assert other.get() == "from sync fixture"
            other.set("from test")

        async def test_fresh_context():
            assert var.get() == "unset"
        """,
    )
    result.assert_outcomes(passed=2)


def test_clock_and_instrument_fixtures(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from nursery_io.abc import Instrument
        from nursery_io.testing import MockClock

        class Recorder(Instrument):
            def __init__(self):
                self.events = []
            def before_run(self):
                self.events.append("before_run")
            def after_run(self):
                self.events.append("after_run")

        @pytest.fixture
        def recorder():
            r = Recorder()
            yield r
            assert r.events == ["before_run", "after_run"]

        @pytest.fixture
        def second_recorder():
            return Recorder()

        async def test_mock_clock(mock_clock, recorder, second_recorder):
            assert nursery_io.lowlevel.current_clock() is mock_clock
            assert recorder.events == second_recorder.events == ["before_run"]
            start = nursery_io.current_time()
            mock_clock.jump(5)
            assert nursery_io.current_time() == start + 5

        async def test_autojump(autojump_clock):
            start = nursery_io.current_time()
            await nursery_io.sleep(3600)
            assert nursery_io.current_time() - start >= 3600
            with nursery_io.move_on_after(86400) as scope:
                await nursery_io.sleep_forever()
            assert scope.cancelled_caught

        @pytest.fixture
        def clock_via_other(autojump_clock):
            return autojump_clock

        async def test_same_clock_twice_is_fine(autojump_clock, clock_via_other):
            assert nursery_io.lowlevel.current_clock() is autojump_clock

        async def test_two_clocks(mock_clock, autojump_clock):
            pass
        """,
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*too many clocks spoil the broth!*"])


def test_hypothesis(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io
        from hypothesis import given, settings, strategies as st, HealthCheck

        given_runs = []
        parametrized_runs = []

        @settings(max_examples=20, database=None)
        @given(st.integers())
        async def test_given(x):
            assert nursery_io.lowlevel.in_run()
            await nursery_io.sleep(0)
            given_runs.append(x)

        @pytest.mark.parametrize("offset", [1, 2])
        @settings(max_examples=5, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(x=st.integers())
        async def test_given_parametrized(offset, x, autojump_clock):
            await nursery_io.sleep(offset)
            assert nursery_io.lowlevel.current_clock() is autojump_clock
            parametrized_runs.append(offset)

        def test_check():
            # Separate lists: an integer example may itself be 1 or 2.
            assert len(given_runs) == 20
            assert sorted(parametrized_runs) == [1] * 5 + [2] * 5
        """,
    )
    result.assert_outcomes(passed=4)


def test_skip_and_xfail_inside_async_test(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        async def test_skip():
            await nursery_io.sleep(0)
            pytest.skip("skipped directly")

        async def test_skip_in_child():
            async def child():
                await nursery_io.sleep(0)
                pytest.skip("skipped in a child task")
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(child)

        async def test_xfail():
            pytest.xfail("expected")

        @pytest.mark.xfail(raises=ZeroDivisionError, strict=True)
        async def test_xfail_marker():
            1 / 0

        async def call(fn, *args):
            fn(*args)

        async def fail():
            raise RuntimeError("real failure")

        async def test_skip_and_failure_is_a_failure():
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(call, pytest.skip, "hidden")
                nursery.start_soon(fail)

        async def test_skip_and_xfail_is_a_failure():
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(call, pytest.skip, "a")
                nursery.start_soon(call, pytest.xfail, "b")

        @pytest.fixture
        async def skipping():
            pytest.skip("fixture skips")
            yield

        async def test_skipped_by_fixture(skipping):
            raise AssertionError("not reached")
        """,
        "-rsx",
    )
    result.assert_outcomes(skipped=3, xfailed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["*skipped directly*", "*skipped in a child task*", "*fixture skips*"]
    )


def test_errors_in_setup_and_teardown_are_reported(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest, nursery_io

        log = []

        @pytest.fixture
        async def bad_teardown():
            yield
            await nursery_io.sleep(0)
            raise OSError("teardown failed")

        async def test_teardown_error(bad_teardown):
            log.append("ran")

        @pytest.fixture
        async def good():
            yield
            log.append("good torn down")

        @pytest.fixture
        async def bad_setup(good):
            raise LookupError("setup failed")

        async def test_setup_error(bad_setup):
            log.append("must not run")

        async def test_test_and_teardown_both_fail(bad_teardown):
            raise ZeroDivisionError("test failed")

        @pytest.fixture
        async def two_yields():
            yield
            yield

        async def test_two_yields(two_yields):
            pass

        @pytest.fixture
        async def no_yield():
            if False:
                yield

        async def test_no_yield(no_yield):
            pass

        @pytest.fixture
        async def quietly_cancels():
            with nursery_io.move_on_after(1):
                yield

        async def test_quiet_cancel(quietly_cancels, autojump_clock):
            await nursery_io.sleep_forever()

        def test_check():
            assert log == ["ran", "good torn down"]
        """,
    )
    result.assert_outcomes(passed=1, failed=6)
    result.stdout.fnmatch_lines_random(
        [
            "*OSError: teardown failed",
            "*LookupError: setup failed",
            "*errors in the async test and its fixtures (2 sub-exceptions)*",
            "*<fixture 'two_yields'> yielded more than once*",
            "*<fixture 'no_yield'> finished without yielding a value*",
            "*<fixture 'quietly_cancels'> cancelled the test but didn't raise an error*",
        ]
    )


def test_misuse_errors(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest

        @pytest.fixture
        async def afix():
            return 1

        def test_sync_uses_async_fixture(afix):
            pass

        def test_again(afix):
            # pytest's bookkeeping for a fixture whose setup failed must stay intact.
            pass

        async def test_fine(afix):
            assert afix == 1

        @pytest.fixture(scope="module")
        async def wide():
            return 1

        async def test_uses_wide(wide):
            pass
        """,
    )
    result.assert_outcomes(errors=3, passed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*fixture 'afix' must run inside nursery_io, but test "
            "'test_sync_uses_async_fixture' is not a nursery_io test*",
            "*async fixture 'wide' has scope 'module'*must be function-scoped*",
        ]
    )


def test_wide_scope_error_in_marker_mode(pytester: pytest.Pytester) -> None:
    result = run_inner(
        pytester,
        """
        import pytest

        class TestIt:
            @pytest.fixture(scope="class")
            async def per_class(self):
                return 1

            @pytest.mark.nursery_io
            async def test_it(self, per_class):
                pass
        """,
        mode=False,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*async fixture 'per_class' has scope 'class'*"])


def test_fixture_names_shared_with_pytest_trio_go_to_each_plugins_tests(
    pytester: pytest.Pytester,
) -> None:
    # With pytest-trio active too, both plugins define `nursery`, `mock_clock` and
    # `autojump_clock`, and pytest lets one definition of each name win. Whichever wins
    # (it depends on plugin load order, so both orders are run), each test gets its own
    # plugin's fixture.
    pytester.makeini(
        "[pytest]\nnursery_io_mode = true\naddopts = -p no:anyio -p no:cacheprovider\n"
    )
    pytester.makepyfile(
        """
        import pytest, trio, trio.testing, nursery_io, nursery_io.testing

        @pytest.mark.trio
        async def test_trio_side(autojump_clock, nursery):
            assert type(autojump_clock) is trio.testing.MockClock
            assert trio.lowlevel.current_clock() is autojump_clock
            assert isinstance(nursery, trio.Nursery)
            await trio.sleep(10)

        @pytest.mark.trio
        async def test_trio_mock_clock(mock_clock):
            assert trio.lowlevel.current_clock() is mock_clock

        async def test_nursery_io_side(autojump_clock, nursery):
            assert type(autojump_clock) is nursery_io.testing.MockClock
            assert nursery_io.lowlevel.current_clock() is autojump_clock
            assert isinstance(nursery, nursery_io.Nursery)
            await nursery_io.sleep(10)

        async def test_nursery_io_mock_clock(mock_clock):
            assert nursery_io.lowlevel.current_clock() is mock_clock

        def test_plain_test_gets_pytest_trios_clock(mock_clock):
            assert type(mock_clock) is trio.testing.MockClock

        def test_plain_test_cannot_use_either_nursery(nursery):
            pass
        """
    )
    for first in ("trio", "nursery_io"):
        result = pytester.runpytest_subprocess("-p", first)
        result.assert_outcomes(passed=5, errors=1)
        result.stdout.fnmatch_lines(["*Trio fixtures can only be used by Trio tests*"])


def test_keyboard_interrupt_protection_is_off_in_tests_and_fixtures(
    pytester: pytest.Pytester,
) -> None:
    result = run_inner(
        pytester,
        """
        import pytest
        from nursery_io.lowlevel import currently_ki_protected

        @pytest.fixture
        async def fix():
            assert not currently_ki_protected()
            yield
            assert not currently_ki_protected()

        @pytest.fixture
        def sync_fix(fix):
            assert not currently_ki_protected()

        async def test_it(sync_fix):
            assert not currently_ki_protected()
        """,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("how", ["raised", "raised_in_child_task", "deferred_signal"])
def test_keyboard_interrupt_stops_the_session_after_teardown(
    pytester: pytest.Pytester, how: str
) -> None:
    pytester.makeini(
        "[pytest]\nnursery_io_mode = true\naddopts = -p no:trio -p no:anyio -p no:cacheprovider\n"
    )
    pytester.makepyfile(
        """
        import pathlib, signal, pytest, nursery_io
        from nursery_io.lowlevel import enable_ki_protection

        async def raised():
            raise KeyboardInterrupt

        async def raised_in_child_task():
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(raised)

        @enable_ki_protection
        def protected_ctrl_c():
            signal.raise_signal(signal.SIGINT)

        async def deferred_signal():
            # Raised in KI-protected code, the interrupt waits for the next checkpoint.
            protected_ctrl_c()
            await nursery_io.sleep_forever()

        @pytest.fixture
        async def fix():
            yield
            pathlib.Path("torn-down").touch()

        async def test_first(fix):
            await HOW()

        async def test_second():
            pass
        """.replace("HOW", how)
    )
    # In-process pytester re-raises a KeyboardInterrupt in the outer session by default.
    reprec = pytester.inline_run(no_reraise_ctrlc=True)
    assert reprec.ret == pytest.ExitCode.INTERRUPTED
    [interrupt] = reprec.getcalls("pytest_keyboard_interrupt")
    assert interrupt.excinfo.type is KeyboardInterrupt
    assert (pytester.path / "torn-down").exists()
    calls = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert not [r for r in calls if r.passed]


# ----- tests that run under the plugin in this very session -----


async def test_ctrl_c_interrupts_test_code_directly() -> None:
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert not currently_ki_protected()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        # A deferred interrupt would arrive here instead, and fail pytest.raises.
        await nursery_io.lowlevel.checkpoint()


async def test_own_session_runs_under_nursery_io(nursery: nursery_io.Nursery) -> None:
    assert nursery_io.lowlevel.in_task()
    task = nursery_io.lowlevel.current_task()
    assert task.name == "<test 'test_own_session_runs_under_nursery_io'>"
    assert nursery.parent_task is task
