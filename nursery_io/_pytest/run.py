"""The test call of the pytest plugin: one run per test (per example, under Hypothesis), in
which the deferred fixtures are set up, the test runs and the fixtures are torn down (the
model is described in ``nursery_io.pytest_plugin``)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterable, Mapping
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Final, Literal

import pytest

import nursery_io
from nursery_io._core import (
    ParkingLot,
    cancel_shielded_checkpoint,
    current_task,
    disable_ki_protection,
    enable_ki_protection,
)
from nursery_io.abc import Clock, Instrument
from nursery_io.testing._run_test import select_clock_and_instruments

from .fixtures import DEFERRED_KEY, NURSERY, DeferredFixture

MARKER: Final = "nursery_io"
TRIO_MARKER: Final = "trio"
# Set on the wrapper that runs a test, so that it is not wrapped again.
RUNNER_ATTR: Final = "_nursery_io_test_runner"

# A test is run either the nursery_io way or the pytest-trio way (see nursery_io.pytest_plugin).
Flavour = Literal["nursery_io", "trio"]


def _choose_run(item: pytest.Function, flavour: Flavour) -> Callable[..., object]:
    marker = MARKER if flavour == "nursery_io" else TRIO_MARKER
    for mark in item.iter_markers(marker):
        run = mark.kwargs.get("run")
        if run is not None:
            if not callable(run):
                pytest.fail(f"@pytest.mark.{marker}(run=...) must be callable", pytrace=False)
            return run  # type: ignore[no-any-return]
    # In trio mode the trio_run setting can only say "trio" (checked at configure).
    return nursery_io.run


def _pytest_trio_clock_and_instruments(
    kwargs: Mapping[str, object],
) -> tuple[Clock | None, list[Instrument]]:
    """pytest-trio's rule: the test's own arguments, at most one of them a Clock."""
    clocks = {name: value for name, value in kwargs.items() if isinstance(value, Clock)}
    if len(clocks) > 1:
        raise ValueError(f"Expected at most one Clock in kwargs, got {clocks!r}")
    instruments = [value for value in kwargs.values() if isinstance(value, Instrument)]
    return next(iter(clocks.values()), None), instruments


def make_test_runner(
    item: pytest.Function, test_fn: Callable[..., Any], flavour: Flavour
) -> Callable[..., None]:
    run = _choose_run(item, flavour)
    deferred = list(item.stash.get(DEFERRED_KEY, ()))
    # nursery_io's rule looks at every fixture of the test; pytest-trio's at the arguments
    # of each call (Hypothesis adds its own).
    fixed_clock_and_instruments = (
        select_clock_and_instruments(
            (name, value)
            for name, value in item.funcargs.items()
            if not isinstance(value, DeferredFixture)
        )
        if flavour == "nursery_io"
        else None
    )

    @functools.wraps(test_fn)
    def runner(*args: object, **kwargs: object) -> None:
        __tracebackhide__ = True
        if fixed_clock_and_instruments is None:
            clock, instruments = _pytest_trio_clock_and_instruments(kwargs)
        else:
            clock, instruments = fixed_clock_and_instruments
        test_run = TestRun(deferred, test_fn, args, kwargs, flavour)
        try:
            run(test_run.main, clock=clock, instruments=instruments)
        except nursery_io.TrioInternalError as exc:
            if isinstance(exc.__cause__, _PYTEST_OUTCOMES):
                # Raised by a signal handler while the run was waiting for events: that's
                # pytest-timeout's (signal method) "Failed: Timeout", not a bug of the run.
                raise exc.__cause__ from None
            raise
        except BaseExceptionGroup as group:
            if group.subgroup(KeyboardInterrupt) is not None:
                # Ctrl-C must stop the session, not be reported as one more test failure.
                raise KeyboardInterrupt from group
            leaf = _lone_outcome(group)
            if leaf is not None:
                # A skip/xfail/fail/exit from inside a nursery arrives wrapped; pytest only
                # recognizes it bare.
                raise leaf from None
            # pytest prints a group with its own traceback, which here would only show the
            # run's plumbing; the interesting tracebacks are the members'.
            raise group.with_traceback(None)  # noqa: B904

    setattr(runner, RUNNER_ATTR, True)
    return runner


def _lone_outcome(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        exc = todo.pop()
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1 and isinstance(leaves[0], _PYTEST_OUTCOMES):
        return leaves[0]
    return None


# What pytest.skip(), xfail(), fail() and exit() raise.
_PYTEST_OUTCOMES: Final = (
    pytest.skip.Exception,
    pytest.xfail.Exception,
    pytest.fail.Exception,
    pytest.exit.Exception,
)


# ----- fixtures and the test inside the run -----


class _Flag:
    """A one-shot event for the plugin's own bookkeeping (no checkpoint when already set)."""

    __slots__ = ("_lot", "is_set")

    def __init__(self) -> None:
        self._lot = ParkingLot()
        self.is_set = False

    def set(self) -> None:
        if not self.is_set:
            self.is_set = True
            self._lot.unpark_all()

    async def wait(self) -> None:
        if not self.is_set:
            await self._lot.park()


class _Node:
    """One deferred fixture, or the test itself, during one run."""

    __slots__ = (
        "args",
        "func",
        "is_test",
        "kwargs",
        "name",
        "set_up",
        "torn_down",
        "used",
        "users",
        "value",
    )

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        is_test: bool,
    ) -> None:
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_test = is_test
        self.value: object = None
        # The fixtures this node waits for before it starts, and the nodes that wait for
        # it (its teardown waits until they have all finished).
        self.used: list[_Node] = []
        self.users: list[_Node] = []
        # Set when setup has finished or was given up; users may then start.
        self.set_up = _Flag()
        # Set when the node has finished altogether (torn down, or never started).
        self.torn_down = _Flag()


class TestRun:
    """Sets up the deferred fixtures, runs the test and tears down, inside one run.

    Every node (a fixture, or the test) gets a task, all started together. A node waits
    for the fixtures it uses to be set up, sets up, then waits for its users to finish
    before it tears down. The test uses every fixture, so fixtures pytest set up for it
    without it asking by name (autouse, ``usefixtures``) live exactly as long as the rest.

    A failure anywhere "crashes" the run: the setups in progress and the test are
    cancelled, nodes that haven't started never do, and the ones that did set up are
    torn down in order as usual.
    """

    def __init__(
        self,
        deferred: list[DeferredFixture],
        test_fn: Callable[..., Any],
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        flavour: Flavour,
    ) -> None:
        # pytest-trio's reporting: errors come out of each node's own nursery.
        self.wrap_errors = flavour == "trio"
        self.group_message = (
            "errors in async test and trio fixtures"
            if flavour == "trio"
            else "errors in the async test and its fixtures"
        )
        self.nodes: list[_Node] = []
        self.node_for: dict[DeferredFixture, _Node] = {}
        for fixture in deferred:
            node = _Node(f"<fixture {fixture.name!r}>", fixture.func, (), fixture.kwargs, False)
            self.node_for[fixture] = node
            self.nodes.append(node)
        test = _Node(f"<test {test_fn.__name__!r}>", test_fn, args, kwargs, True)
        for node in self.nodes:
            node.used = self._fixtures_in(node.kwargs.values())
            for used in node.used:
                used.users.append(node)
        test.used = list(self.nodes)
        for used in test.used:
            used.users.append(test)
        self.test = test
        self.nodes.append(test)
        self.unfinished = len(self.nodes)
        self.all_finished = _Flag()
        self.context: contextvars.Context | None = None
        self.crashed = False
        self.errors: list[BaseException] = []
        self.failed: set[_Node] = set()
        self.cancelled_by: list[_Node] = []
        # Scopes around setups in progress and around the test: what a crash cancels.
        self.active: set[nursery_io.CancelScope] = set()

    def _fixtures_in(self, values: Iterable[object]) -> list[_Node]:
        found: list[_Node] = []
        for value in values:
            node = self.node_for.get(value) if isinstance(value, DeferredFixture) else None
            if node is not None and node not in found:
                found.append(node)
        return found

    def crash(self, node: _Node, exc: BaseException | None) -> None:
        if exc is None or isinstance(exc, nursery_io.Cancelled):
            self.cancelled_by.append(node)
        else:
            self.errors.append(exc)
            self.failed.add(node)
        self.crashed = True
        for scope in self.active:
            scope.cancel()

    # Protected: a Ctrl-C that lands in this bookkeeping is deferred to the wait below.
    @enable_ki_protection
    async def main(self) -> None:
        __tracebackhide__ = True
        self.context = contextvars.copy_context()
        async with nursery_io.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(self._run_node, node, name=node.name)
            # Waiting here (rather than in the nursery's exit) lets a deferred Ctrl-C,
            # which is delivered to this task, stop the test like any crash and still
            # tear the fixtures down in order.
            while not self.all_finished.is_set:
                try:
                    await self.all_finished.wait()
                except KeyboardInterrupt as exc:
                    self.crash(self.test, exc)
        errors = list(self.errors)
        for node in self.cancelled_by:
            if node not in self.failed:
                errors.append(
                    RuntimeError(f"{node.name} cancelled the test but didn't raise an error")
                )
                self.failed.add(node)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup(self.group_message, errors)

    def _resolve(
        self, kwargs: Mapping[str, object], own_nursery: nursery_io.Nursery | None
    ) -> dict[str, object]:
        resolved: dict[str, object] = {}
        for name, value in kwargs.items():
            if value is NURSERY:
                resolved[name] = own_nursery
            elif isinstance(value, DeferredFixture):
                node = self.node_for.get(value)
                if node is None:
                    raise RuntimeError(
                        f"fixture {value.name!r} was not set up for this test (was it "
                        "requested with request.getfixturevalue() from inside the test?)"
                    )
                resolved[name] = node.value
            else:
                resolved[name] = value
        return resolved

    # The coroutines below sit between the task's root and the user's code. They are
    # marked unprotected so that Ctrl-C interrupts a test the way it interrupts any other
    # user code (frames in nursery_io's own modules are otherwise KI-protected).

    @disable_ki_protection
    async def _run_node(self, node: _Node) -> None:
        __tracebackhide__ = True
        assert self.context is not None
        # Every node runs in the one shared context; the assignment takes effect at the
        # task's next step, hence the schedule point.
        current_task().context = self.context
        await cancel_shielded_checkpoint()
        try:
            if self.wrap_errors or any(value is NURSERY for value in node.kwargs.values()):
                await self._in_own_nursery(node)
            else:
                # A nursery of its own isn't needed: just a scope that a crash can cancel.
                with nursery_io.CancelScope() as scope:
                    await self._lifetime(node, scope, None)
        except BaseException as exc:
            self.crash(node, exc)
        finally:
            node.set_up.set()
            node.torn_down.set()
            self.unfinished -= 1
            if not self.unfinished:
                self.all_finished.set()

    @disable_ki_protection
    async def _in_own_nursery(self, node: _Node) -> None:
        __tracebackhide__ = True
        # The node's own nursery: what the `nursery` fixture gives it, and (as in
        # pytest-trio) the scope a crash cancels and what wraps the node's errors. Its
        # tasks are cancelled once the test returns (or the fixture is torn down), and a
        # crash in one of them cancels the node first.
        async with nursery_io.open_nursery() as own:
            try:
                await self._lifetime(node, own.cancel_scope, own)
            except nursery_io.Cancelled:
                raise  # it belongs to a scope outside this body
            except BaseException as exc:
                if self.wrap_errors:
                    raise
                # Recorded here, the node's own error is reported as itself rather than
                # wrapped in this nursery's exception group.
                self.crash(node, exc)
            finally:
                own.cancel_scope.cancel()

    @disable_ki_protection
    async def _lifetime(
        self, node: _Node, scope: nursery_io.CancelScope, own: nursery_io.Nursery | None
    ) -> None:
        __tracebackhide__ = True
        for used in node.used:
            await used.set_up.wait()
        if self.crashed:
            return  # something failed before this node could start: it never does
        self.active.add(scope)
        kwargs = self._resolve(node.kwargs, own)
        if node.is_test:
            await node.func(*node.args, **kwargs)
            return
        produced = node.func(**kwargs)
        node.value = await self._setup(node, produced)
        self.active.discard(scope)
        node.set_up.set()
        thrown: BaseException | None = None
        if scope.cancel_called:
            # A crash arrived as setup finished: no user will start; only wait for the
            # ones that are on their way out.
            with nursery_io.CancelScope(shield=True):
                await self._wait_for_users(node)
        else:
            try:
                await self._wait_for_users(node)
            except nursery_io.Cancelled as exc:
                # Only scopes opened by this fixture (still open across its yield) or its
                # own nursery can cancel us here: a task in one of its nurseries crashed.
                # Stop the test, let the users finish, then hand the Cancelled to the
                # fixture so that its nurseries unwind and report.
                thrown = exc
                self.crash(node, None)
                with nursery_io.CancelScope(shield=True):
                    await self._wait_for_users(node)
        await self._teardown(node, produced, thrown)

    @staticmethod
    async def _wait_for_users(node: _Node) -> None:
        for user in node.users:
            await user.torn_down.wait()

    @disable_ki_protection
    async def _setup(self, node: _Node, produced: object) -> object:
        __tracebackhide__ = True
        if isinstance(produced, CoroutineType):
            return await produced
        if isinstance(produced, AsyncGeneratorType):
            try:
                return await produced.asend(None)
            except StopAsyncIteration:
                raise RuntimeError(f"{node.name} finished without yielding a value") from None
        if isinstance(produced, GeneratorType):
            try:
                return next(produced)
            except StopIteration:
                raise RuntimeError(f"{node.name} finished without yielding a value") from None
        return produced

    @disable_ki_protection
    async def _teardown(self, node: _Node, produced: object, thrown: BaseException | None) -> None:
        __tracebackhide__ = True
        too_many = (
            "too many yields in fixture"
            if self.wrap_errors
            else f"{node.name} yielded more than once"
        )
        if isinstance(produced, AsyncGeneratorType):
            try:
                if thrown is None:
                    await produced.asend(None)
                else:
                    await produced.athrow(thrown)
            except StopAsyncIteration:
                return
            await produced.aclose()
            raise RuntimeError(too_many)
        if isinstance(produced, GeneratorType):
            try:
                if thrown is None:
                    next(produced)
                else:
                    produced.throw(thrown)
            except StopIteration:
                return
            produced.close()
            raise RuntimeError(too_many)
