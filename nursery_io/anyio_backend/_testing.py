"""The test runner anyio's pytest plugin drives: one nursery_io run for many tests.

anyio wants every async fixture and test of a session (or module) to run *in one task of
one long-lived event loop*, so that context variables set by a fixture are seen by the
test, and a cancel scope opened by an async-generator fixture can span the test. Yet pytest
calls in from its own synchronous thread, once per fixture and test.

A :class:`nursery_io.lowlevel.SteppedRun` gives exactly that: the run's main task serves
requests one after another, and the pytest thread turns the loop only while it waits for
a request to finish. Between requests the thread is outside the run (``in_run()`` is
False), so synchronous tests can even start runs of their own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar

import outcome
from anyio.abc import TestRunner as AbstractTestRunner

import nursery_io
from nursery_io import _core

__all__ = ["TestRunner"]

T = TypeVar("T")


class _Request:
    """One awaitable for the runner task to run; ``result`` is filled in when done."""

    __slots__ = ("awaitable_fn", "result")

    def __init__(self, awaitable_fn: Callable[[], Awaitable[Any]]) -> None:
        self.awaitable_fn = awaitable_fn
        self.result: outcome.Outcome[Any] | None = None


class TestRunner(AbstractTestRunner):
    """Runs anyio fixtures and tests in one task of one :class:`~nursery_io.lowlevel.SteppedRun`.

    ``options`` are passed to ``SteppedRun`` (``clock``, ``instruments``,
    ``strict_exception_groups``). The run starts with the first request and ends in
    :meth:`__exit__`, which lets it shut down cleanly (system tasks, async generators).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._run: _core.SteppedRun | None = None
        self._send: nursery_io.MemorySendChannel[_Request] | None = None
        self._receive: nursery_io.MemoryReceiveChannel[_Request] | None = None

    # ----- the run side -----

    async def _serve(self) -> None:
        assert self._receive is not None
        async with self._receive:
            async for request in self._receive:
                # Awaited right here, in this one task: that is the whole point.
                request.result = await outcome.acapture(request.awaitable_fn)

    # ----- the pytest side -----

    def _start(self) -> _core.SteppedRun:
        if self._run is None:
            self._send, self._receive = nursery_io.open_memory_channel[_Request](float("inf"))
            self._run = _core.SteppedRun(self._serve, **self._options)
        return self._run

    def _call(self, awaitable_fn: Callable[[], Awaitable[T]]) -> T:
        if _core.in_run():
            # A synchronous call from inside the run (e.g. request.getfixturevalue() in an
            # async test) would wait for itself forever.
            raise RuntimeError(
                "the nursery_io test runner cannot be re-entered from inside its own run"
            )
        run = self._start()
        send = self._send
        assert send is not None
        request = _Request(awaitable_fn)
        run.token.run_sync_soon(send.send_nowait, request)
        while request.result is None:
            if not run.turn():
                # The runner task is gone: only a crash of the run itself gets here.
                run.result()
                raise RuntimeError("the nursery_io test run ended while a test was running")
        result: T = request.result.unwrap()
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        run, send = self._run, self._send
        if run is None or send is None:
            return
        self._run = None
        if not run.done:
            # Ending the channel lets the runner task return; the run then winds down its
            # system tasks and async generators inside the run, as a normal run would.
            run.token.run_sync_soon(send.close)
            while run.turn():
                pass
        run.result()

    def is_running(self) -> bool:
        return _core.in_task()

    def run_asyncgen_fixture(
        self,
        fixture_func: Callable[..., AsyncGenerator[T, Any]],
        kwargs: dict[str, Any],
    ) -> Iterable[T]:
        agen = fixture_func(**kwargs)
        value = self._call(lambda: agen.asend(None))
        yield value
        try:
            self._call(lambda: agen.asend(None))
        except StopAsyncIteration:
            pass
        else:
            self._call(agen.aclose)
            raise RuntimeError("Async generator fixture did not stop")

    def run_fixture(
        self,
        fixture_func: Callable[..., Coroutine[Any, Any, T]],
        kwargs: dict[str, Any],
    ) -> T:
        return self._call(lambda: fixture_func(**kwargs))

    def run_test(
        self, test_func: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]
    ) -> None:
        self._call(lambda: test_func(**kwargs))
