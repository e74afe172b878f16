"""pytest integration: run ``async def`` tests and async fixtures under :func:`nursery_io.run`.

Enabled automatically when nursery_io is installed (entry point ``pytest11``). A test runs
under nursery_io when it is marked ``@pytest.mark.nursery_io`` (optionally
``@pytest.mark.nursery_io(run=other_run)``, where ``other_run`` takes the same arguments as
:func:`nursery_io.run`), or when the ini option ``nursery_io_mode = true`` is set, which marks
every ``async def`` test that isn't claimed by another async framework's marker.

How a test runs
---------------
pytest sets fixtures up synchronously, before it calls the test. Async fixtures (and sync
fixtures that depend on them) can't be evaluated there, so during setup they resolve to a
placeholder; the real work happens when pytest calls the test:

* one :func:`nursery_io.run` per test (per example, under Hypothesis) evaluates the deferred
  fixtures and then the test, each in its own task, one after the other in pytest's order;
* a fixture's task stays alive after setup, so a fixture may ``yield`` inside an open
  nursery and its background tasks keep running during the test;
* teardown runs in the reverse order of setup, each fixture after everything set up after it
  has finished;
* if a fixture fails (in setup, in teardown, or in a background task), the test and any
  setup still in progress are cancelled, the fixtures are torn down, and the failure is
  reported: one error as itself, several as an exception group;
* the fixtures and the test share one :class:`contextvars.Context`, so a context variable set
  in a fixture is visible in the test.

Built-in fixtures: ``nursery`` (a nursery owned by the test or fixture that requests it;
its tasks are cancelled once the test returns or the fixture is torn down), ``mock_clock``
and ``autojump_clock``. Any fixture whose value is a
:class:`nursery_io.abc.Clock` becomes the run's clock, and every
:class:`nursery_io.abc.Instrument` fixture is installed for the run.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Final, NoReturn

import pytest

import nursery_io
from nursery_io.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    current_task,
    disable_ki_protection,
    enable_ki_protection,
)
from nursery_io.testing import MockClock
from nursery_io.testing._run_test import select_clock_and_instruments

_resolve_fixture_function: Callable[[Any, Any], Callable[..., Any]] | None
try:  # pytest's own helper binds fixtures defined as methods of a test class.
    from _pytest.fixtures import resolve_fixture_function as _resolve_fixture_function
except ImportError:  # pragma: no cover - depends on pytest internals
    _resolve_fixture_function = None

__all__ = ["autojump_clock", "mock_clock", "nursery"]

MARKER: Final = "nursery_io"
# Tests carrying one of these belong to another plugin, even in nursery_io mode.
_FOREIGN_ASYNC_MARKERS: Final = ("trio", "anyio", "asyncio")
_RUNNER_ATTR: Final = "_nursery_io_test_runner"
_FORCED_ATTR: Final = "_nursery_io_fixture"
_BUILTIN_ATTR: Final = "_nursery_io_builtin_fixture"


# ----- configuration -----


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "nursery_io_mode",
        "run every async test and async fixture under nursery_io (tests marked for trio, "
        "anyio or asyncio are left alone)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(run=None): run this async test (and its async fixtures) under "
        "nursery_io.run, or under the given run function with the same signature",
    )


def _mode_enabled(config: pytest.Config) -> bool:
    return bool(config.getini("nursery_io_mode"))


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def _test_function(item: pytest.Function) -> Callable[..., Any]:
    """The function that will be awaited: under Hypothesis, the one ``@given`` wraps."""
    handle = getattr(item.obj, "hypothesis", None)
    if handle is not None:
        inner: Callable[..., Any] = handle.inner_test
        return inner
    fn: Callable[..., Any] = item.obj
    return fn


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _mode_enabled(config):
        return
    mark = getattr(pytest.mark, MARKER)
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if item.get_closest_marker(MARKER) is not None:
            continue
        if _is_foreign(item):
            continue
        if inspect.iscoroutinefunction(_test_function(item)):
            item.add_marker(mark)


def _is_ours(item: pytest.Item) -> bool:
    return isinstance(item, pytest.Function) and item.get_closest_marker(MARKER) is not None


def _is_foreign(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) is not None for name in _FOREIGN_ASYNC_MARKERS)


def _shadowing_problem(
    fixturedef: pytest.FixtureDef[Any], item: pytest.Item, ours: bool
) -> str | None:
    # pytest-trio defines fixtures with the same names as ours (nursery, mock_clock,
    # autojump_clock); with both plugins active, one set silently hides the other and the
    # test would get the wrong library's object. Say so instead.
    func = fixturedef.func
    if ours and getattr(func, "__module__", None) == "pytest_trio.plugin":
        shadowing, wanted = "pytest-trio", "nursery_io"
    elif getattr(func, _BUILTIN_ATTR, False) and item.get_closest_marker("trio") is not None:
        shadowing, wanted = "nursery_io", "pytest-trio"
    else:
        return None
    return (
        f"fixture {fixturedef.argname!r} here comes from {shadowing}'s plugin, but test "
        f"{item.name!r} is a {wanted} test: both plugins define this fixture and only one "
        "can be seen. Disable one of them for this session (-p no:trio or -p no:nursery_io)."
    )


def _fail_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest, message: str
) -> NoReturn:
    """Fail this fixture's setup the way pytest's own setup does: the error is cached, so
    that pytest's teardown bookkeeping for the fixture stays consistent."""
    __tracebackhide__ = True
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception as exc:
        key = fixturedef.cache_key(request)  # type: ignore[arg-type]
        fixturedef.cached_result = (None, key, (exc, exc.__traceback__))
        raise


# ----- fixtures: setup phase (placeholders) -----


class DeferredFixture:
    """What pytest holds for a fixture that can only be evaluated inside the test's run."""

    __slots__ = ("func", "kwargs", "name")

    def __init__(self, name: str, func: Callable[..., Any], kwargs: dict[str, object]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"<nursery_io fixture {self.name!r}: its value only exists inside the test's "
            "nursery_io run>"
        )


_DEFERRED_KEY: Final = pytest.StashKey[list[DeferredFixture]]()


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> object | None:
    func = fixturedef.func
    # For a wider-scoped fixture request.node is the module or session; we want the test.
    item = getattr(request, "_pyfuncitem", request.node)
    ours = _is_ours(item)
    problem = _shadowing_problem(fixturedef, item, ours)
    if problem is not None:
        _fail_setup(fixturedef, request, problem)
    needs_run = _is_async_callable(func) or getattr(func, _FORCED_ATTR, False)
    if not needs_run:
        # A sync fixture is deferred too if it uses a deferred one; only function-scoped
        # fixtures of our tests can (pytest forbids wider scopes from using narrower ones).
        if not ours or not fixturedef.argnames or fixturedef.scope != "function":
            return None
        kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
        if not any(isinstance(value, DeferredFixture) for value in kwargs.values()):
            return None
    else:
        if not ours:
            forced = getattr(func, _FORCED_ATTR, False)
            if not forced and (_is_foreign(item) or not _mode_enabled(request.config)):
                # Not ours to handle: another plugin may, or pytest reports it.
                return None
        if fixturedef.scope != "function":
            _fail_setup(
                fixturedef,
                request,
                f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}, but "
                "nursery_io fixtures must be function-scoped: each test has its own run, "
                "and a fixture's tasks can't outlive it",
            )
        if not ours:
            _fail_setup(
                fixturedef,
                request,
                f"fixture {fixturedef.argname!r} must run inside nursery_io, but test "
                f"{item.name!r} is not a nursery_io test. Make the test 'async def' (in "
                f"nursery_io mode) or mark it with @pytest.mark.{MARKER}.",
            )
        kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    cache_key = fixturedef.cache_key(request)  # type: ignore[arg-type]
    if func is _nursery_fixture:
        fixturedef.cached_result = (_NURSERY, cache_key, None)
        return _NURSERY
    if _resolve_fixture_function is not None:
        func = _resolve_fixture_function(fixturedef, request)
    placeholder = DeferredFixture(fixturedef.argname, func, kwargs)
    fixturedef.cached_result = (placeholder, cache_key, None)
    item.stash.setdefault(_DEFERRED_KEY, []).append(placeholder)
    return placeholder


# ----- the test call -----


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker(MARKER) is None:
        return None
    _check_marker_arguments(pyfuncitem)
    funcargs = pyfuncitem.funcargs
    testargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    handle = getattr(pyfuncitem.obj, "hypothesis", None)
    test_fn = _test_function(pyfuncitem)
    if getattr(test_fn, _RUNNER_ATTR, False):
        # Already wrapped (say by a re-entrant call); calling it runs the test.
        pyfuncitem.obj(**testargs)
        return True
    if not inspect.iscoroutinefunction(test_fn):
        if any(mark.name == MARKER for mark in pyfuncitem.own_markers):
            pytest.fail(
                f"test {pyfuncitem.name!r} is marked {MARKER} but is not an 'async def' function",
                pytrace=False,
            )
        return None  # marked through its module or class: a plain test runs as usual
    runner = _make_test_runner(pyfuncitem, test_fn)
    if handle is None:
        runner(**testargs)
        return True
    # Hypothesis calls inner_test once per example: make each call a run. The hypothesis
    # handle is shared by every item made from this function (parametrize), so put the
    # original back afterwards instead of leaving an item-specific wrapper behind.
    handle.inner_test = runner
    try:
        pyfuncitem.obj(**testargs)
    finally:
        handle.inner_test = test_fn
    return True


def _check_marker_arguments(item: pytest.Function) -> None:
    for mark in item.iter_markers(MARKER):
        unknown = set(mark.kwargs) - {"run"}
        if mark.args or unknown:
            given = [repr(arg) for arg in mark.args]
            given += [f"{key}={mark.kwargs[key]!r}" for key in sorted(unknown)]
            pytest.fail(
                f"@pytest.mark.{MARKER} takes only the keyword argument run=, not "
                f"{', '.join(given)}",
                pytrace=False,
            )


def _choose_run(item: pytest.Function) -> Callable[..., object]:
    for mark in item.iter_markers(MARKER):
        run = mark.kwargs.get("run")
        if run is not None:
            if not callable(run):
                pytest.fail(f"@pytest.mark.{MARKER}(run=...) must be callable", pytrace=False)
            return run  # type: ignore[no-any-return]
    return nursery_io.run


def _make_test_runner(item: pytest.Function, test_fn: Callable[..., Any]) -> Callable[..., None]:
    run = _choose_run(item)
    deferred = list(item.stash.get(_DEFERRED_KEY, ()))
    clock, instruments = select_clock_and_instruments(
        (name, value)
        for name, value in item.funcargs.items()
        if not isinstance(value, DeferredFixture)
    )

    @functools.wraps(test_fn)
    def runner(*args: object, **kwargs: object) -> None:
        __tracebackhide__ = True
        test_run = _TestRun(deferred, test_fn, args, kwargs)
        try:
            run(test_run.main, clock=clock, instruments=instruments)
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

    setattr(runner, _RUNNER_ATTR, True)
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

    __slots__ = ("args", "finished", "func", "is_test", "kwargs", "name", "ready", "value")

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
        # Set when setup has finished or was given up; the next node may then start.
        self.ready = _Flag()
        # Set when the node (and so everything set up after it) has finished.
        self.finished = _Flag()


class _TestRun:
    """Sets up the deferred fixtures, runs the test and tears down, inside one run.

    Nodes (the fixtures in pytest's setup order, then the test) each get a task. Node *k*
    starts setting up when node *k-1* is ready, and tears down once node *k+1* has
    finished, so setup and teardown are strictly ordered while every fixture's task (and
    anything it started) stays alive through the test.

    A failure anywhere "crashes" the run: setups still in progress and the test are
    cancelled, nodes that haven't started are skipped, and the nodes that did set up are
    torn down in order as usual.
    """

    def __init__(
        self,
        deferred: list[DeferredFixture],
        test_fn: Callable[..., Any],
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
    ) -> None:
        self.nodes: list[_Node] = []
        self.node_for: dict[DeferredFixture, _Node] = {}
        for fixture in deferred:
            node = _Node(f"<fixture {fixture.name!r}>", fixture.func, (), fixture.kwargs, False)
            self.node_for[fixture] = node
            self.nodes.append(node)
        self.nodes.append(_Node(f"<test {test_fn.__name__!r}>", test_fn, args, kwargs, True))
        self.context: contextvars.Context | None = None
        self.crashed = False
        self.errors: list[BaseException] = []
        self.failed: set[_Node] = set()
        self.cancelled_by: list[_Node] = []
        # Scopes around setups in progress and around the test: what a crash cancels.
        self.active: set[nursery_io.CancelScope] = set()

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
            for index, node in enumerate(self.nodes):
                nursery.start_soon(self._run_node, index, name=node.name)
            # The first node finishes last. Waiting for it here (rather than in the
            # nursery's exit) lets a deferred Ctrl-C, which is delivered to this task,
            # stop the test like any crash and still tear the fixtures down in order.
            while not self.nodes[0].finished.is_set:
                try:
                    await self.nodes[0].finished.wait()
                except KeyboardInterrupt as exc:
                    self.crash(self.nodes[-1], exc)
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
            raise BaseExceptionGroup("errors in the async test and its fixtures", errors)

    def _resolve(
        self, kwargs: Mapping[str, object], own_nursery: nursery_io.Nursery | None
    ) -> dict[str, object]:
        resolved: dict[str, object] = {}
        for name, value in kwargs.items():
            if value is _NURSERY:
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
    async def _run_node(self, index: int) -> None:
        __tracebackhide__ = True
        node = self.nodes[index]
        assert self.context is not None
        # Every node runs in the one shared context; the assignment takes effect at the
        # task's next step, hence the schedule point.
        current_task().context = self.context
        await cancel_shielded_checkpoint()
        try:
            if index:
                await self.nodes[index - 1].ready.wait()
            if not self.crashed:
                await self._live(index, node)
        except BaseException as exc:
            self.crash(node, exc)
        finally:
            node.ready.set()
            node.finished.set()

    @disable_ki_protection
    async def _live(self, index: int, node: _Node) -> None:
        __tracebackhide__ = True
        # This scope must stay open until teardown: a fixture that yields inside a
        # nursery or cancel scope leaves those open in this task, nested inside it.
        with nursery_io.CancelScope() as scope:
            self.active.add(scope)
            if not any(value is _NURSERY for value in node.kwargs.values()):
                await self._lifetime(index, node, scope, None)
                return
            # The `nursery` fixture: a nursery owned by this node's task, so its tasks
            # are cancelled once the test returns (or the fixture is torn down), and a
            # crash in one of them cancels this node first.
            async with nursery_io.open_nursery() as own:
                try:
                    await self._lifetime(index, node, scope, own)
                except nursery_io.Cancelled:
                    raise  # it belongs to a scope outside this body
                except BaseException as exc:
                    # Record the node's own error here, so that it is reported as itself
                    # rather than wrapped in this nursery's exception group.
                    self.crash(node, exc)
                finally:
                    own.cancel_scope.cancel()

    @disable_ki_protection
    async def _lifetime(
        self,
        index: int,
        node: _Node,
        scope: nursery_io.CancelScope,
        own_nursery: nursery_io.Nursery | None,
    ) -> None:
        __tracebackhide__ = True
        following = self.nodes[index + 1] if index + 1 < len(self.nodes) else None
        try:
            kwargs = self._resolve(node.kwargs, own_nursery)
            if node.is_test:
                await node.func(*node.args, **kwargs)
                return
            produced = node.func(**kwargs)
            node.value = await self._setup(node, produced)
        finally:
            self.active.discard(scope)
        node.ready.set()
        thrown: BaseException | None = None
        if following is not None:
            if scope.cancel_called:
                # A crash arrived just as setup finished: nothing after us will start.
                with nursery_io.CancelScope(shield=True):
                    await following.finished.wait()
            else:
                try:
                    await following.finished.wait()
                except nursery_io.Cancelled as exc:
                    # Only scopes opened by this fixture (still open across its yield) or
                    # its `nursery` can cancel us here: a task in one of its nurseries
                    # crashed. Stop the test, let everything after us finish, then hand
                    # the Cancelled to the fixture so its nurseries unwind and report.
                    thrown = exc
                    self.crash(node, None)
                    with nursery_io.CancelScope(shield=True):
                        await following.finished.wait()
        await self._teardown(node, produced, thrown)

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
        if isinstance(produced, AsyncGeneratorType):
            try:
                if thrown is None:
                    await produced.asend(None)
                else:
                    await produced.athrow(thrown)
            except StopAsyncIteration:
                return
            await produced.aclose()
            raise RuntimeError(f"{node.name} yielded more than once")
        if isinstance(produced, GeneratorType):
            try:
                if thrown is None:
                    next(produced)
                else:
                    produced.throw(thrown)
            except StopIteration:
                return
            produced.close()
            raise RuntimeError(f"{node.name} yielded more than once")


# ----- built-in fixtures -----


def _nursery_fixture() -> nursery_io.Nursery:
    """A nursery for the test (or fixture) that asks for it, open for as long as it runs.

    Each requester gets its own nursery, owned by its own task: for the test, the nursery's
    tasks are cancelled when the test returns; for a fixture, after its teardown. A task
    in it that raises cancels the requester and fails the test with that error.
    """
    raise AssertionError("unreachable: the nursery_io plugin supplies this fixture's value")


# Marked so that a plain test asking for it gets our explanation, not pytest's generic one.
setattr(_nursery_fixture, _FORCED_ATTR, True)
# The value pytest caches for `nursery`; each node that uses it gets its own nursery.
_NURSERY: Final = DeferredFixture("nursery", _nursery_fixture, {})


def _mock_clock_fixture() -> MockClock:
    """A :class:`~nursery_io.testing.MockClock` used as the test's clock (time stands still
    unless the test moves it)."""
    return MockClock()


def _autojump_clock_fixture() -> MockClock:
    """A :class:`~nursery_io.testing.MockClock` that jumps to the next deadline whenever every
    task is blocked, so sleeps and timeouts in the test take no real time."""
    return MockClock(autojump_threshold=0)


for _builtin in (_nursery_fixture, _mock_clock_fixture, _autojump_clock_fixture):
    setattr(_builtin, _BUILTIN_ATTR, True)
del _builtin

nursery = pytest.fixture(name="nursery")(_nursery_fixture)
mock_clock = pytest.fixture(name="mock_clock")(_mock_clock_fixture)
autojump_clock = pytest.fixture(name="autojump_clock")(_autojump_clock_fixture)
