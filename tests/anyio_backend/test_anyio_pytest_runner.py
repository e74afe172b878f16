"""The TestRunner behind anyio's pytest plugin: one run, one task, many fixtures and tests."""

from __future__ import annotations

import contextvars
import textwrap
from collections.abc import AsyncIterator

import anyio
import pytest

import nursery_io
from nursery_io.anyio_backend._testing import TestRunner

pytest_plugins = ["pytester"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


# ----- through anyio's plugin (this directory's conftest enables it) -----


@pytest.fixture(scope="module")
async def module_token() -> object:
    return nursery_io.lowlevel.current_token()


@pytest.fixture
async def context_and_scope() -> AsyncIterator[tuple[int, anyio.CancelScope]]:
    request_id.set("from the fixture")
    with anyio.CancelScope() as scope:
        yield anyio.get_current_task().id, scope
    assert not scope.cancel_called


@pytest.mark.anyio
async def test_fixture_and_test_share_a_task_and_its_context(
    context_and_scope: tuple[int, anyio.CancelScope], module_token: object
) -> None:
    task_id, scope = context_and_scope
    assert anyio.get_current_task().id == task_id
    assert request_id.get() == "from the fixture"
    # The async-generator fixture's scope encloses the test.
    assert anyio.current_effective_deadline() == scope.deadline
    assert nursery_io.lowlevel.current_token() is module_token


@pytest.mark.anyio
async def test_the_module_run_is_reused(module_token: object) -> None:
    assert nursery_io.lowlevel.current_token() is module_token


def test_sync_tests_run_outside_the_run(module_token: object) -> None:
    # The module's run is alive but this thread is between its turns.
    assert not nursery_io.lowlevel.in_run()
    assert nursery_io.run(nursery_io.sleep, 0) is None


@pytest.mark.anyio
async def test_sync_reentry_is_refused() -> None:
    runner = TestRunner()
    assert runner.is_running()
    with pytest.raises(RuntimeError, match="re-entered"):
        runner.run_test(anyio.sleep, {"delay": 0})


# ----- the runner on its own -----


def test_runner_runs_requests_in_one_task_and_shuts_down() -> None:
    task_ids: list[int] = []

    async def note() -> int:
        await anyio.sleep(0)
        task_ids.append(anyio.get_current_task().id)
        return len(task_ids)

    with TestRunner() as runner:
        assert not runner.is_running()
        assert runner.run_fixture(note, {}) == 1
        runner.run_test(note, {})
        assert len(set(task_ids)) == 1
        with pytest.raises(KeyError):
            runner.run_test(_raise, {"exc": KeyError("from the test")})
        # A KeyboardInterrupt leaves the runner usable.
        with pytest.raises(KeyboardInterrupt):
            runner.run_test(_raise, {"exc": KeyboardInterrupt()})
        assert runner.run_fixture(note, {}) == 3
    assert not nursery_io.lowlevel.in_run()


async def _raise(exc: BaseException) -> None:
    await anyio.sleep(0)
    raise exc


def test_runner_async_generator_fixtures() -> None:
    log: list[str] = []

    async def good() -> AsyncIterator[str]:
        log.append("setup")
        yield "value"
        log.append("teardown")

    async def greedy() -> AsyncIterator[str]:
        yield "one"
        yield "two"

    with TestRunner() as runner:
        steps = iter(runner.run_asyncgen_fixture(good, {}))
        assert next(steps) == "value"
        with pytest.raises(StopIteration):
            next(steps)
        assert log == ["setup", "teardown"]
        steps = iter(runner.run_asyncgen_fixture(greedy, {}))
        assert next(steps) == "one"
        with pytest.raises(RuntimeError, match="did not stop"):
            next(steps)


def test_runner_options_reach_the_run() -> None:
    clock = nursery_io.testing.MockClock(autojump_threshold=0)

    async def sleep_long() -> float:
        start = anyio.current_time()
        await anyio.sleep(3600)
        return anyio.current_time() - start

    with TestRunner(clock=clock) as runner:
        assert runner.run_test(sleep_long, {}) is None
        assert runner.run_fixture(sleep_long, {}) == 3600


def test_runner_finishes_system_tasks_on_exit() -> None:
    stopped: list[bool] = []

    async def start_system_task() -> None:
        async def background() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                stopped.append(True)

        nursery_io.lowlevel.spawn_system_task(background)

    with TestRunner() as runner:
        runner.run_fixture(start_system_task, {})
        assert stopped == []
    assert stopped == [True]


# ----- anyio's plugin from scratch, in a separate pytest process -----


def test_anyio_plugin_in_a_fresh_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        import nursery_io  # lets anyio find backend="nursery_io"

        @pytest.fixture(params=["nursery_io"])
        def anyio_backend(request):
            return request.param
        """
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            import contextvars
            import anyio
            import pytest
            import sniffio

            var = contextvars.ContextVar("var")

            @pytest.fixture
            async def setter():
                var.set("set")
                yield
                assert var.get() == "set"

            @pytest.mark.anyio
            async def test_passes(setter):
                assert sniffio.current_async_library() == "nursery_io"
                assert var.get() == "set"
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.sleep, 0)

            @pytest.mark.anyio
            async def test_fails():
                raise AssertionError("expected failure")

            @pytest.mark.anyio
            async def test_skips():
                pytest.skip("expected skip")
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "anyio", "-p", "no:cacheprovider", "-p", "no:trio")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
