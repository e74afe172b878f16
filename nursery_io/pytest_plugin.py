"""pytest integration: run ``async def`` tests and async fixtures under :func:`nursery_io.run`.

Enabled automatically when nursery_io is installed (entry point ``pytest11``). A test runs
under nursery_io when it is marked ``@pytest.mark.nursery_io`` (optionally
``@pytest.mark.nursery_io(run=other_run)``, where ``other_run`` takes the same arguments as
:func:`nursery_io.run`), or when the ini option ``nursery_io_mode = true`` is set, which marks
every ``async def`` test that isn't claimed by another async framework's marker.

Trio mode (``--nursery-io-trio-mode``, ini ``nursery_io_trio_mode = true``, environment
``NURSERY_IO_TRIO_MODE=1``, or a session started with ``python -m nursery_io run --as-trio
-m pytest``) runs a pytest-trio suite unchanged on nursery_io: ``import trio`` gives
nursery_io, and this plugin takes over pytest-trio's ``trio_mode``/``trio_run`` settings,
its ``@pytest.mark.trio`` marker and ``pytest_trio.trio_fixture``.

How a test runs (pytest-trio's model)
-------------------------------------
pytest sets fixtures up synchronously, before it calls the test. Async fixtures (and sync
fixtures that depend on them) can't be evaluated there, so during setup they resolve to a
placeholder; the real work happens when pytest calls the test, in one run per test (per
example, under Hypothesis):

* every deferred fixture and the test get a task of their own, all started at once; each
  waits until the fixtures it uses are set up, so independent fixtures set up
  concurrently;
* a fixture's task stays alive after setup, so a fixture may ``yield`` inside an open
  nursery and its background tasks keep running during the test; it is torn down once
  everything that uses it (and the test) has finished, so teardown runs in reverse
  dependency order, concurrently where independent;
* a failure anywhere (setup, teardown, a background task) "crashes" the test: setups in
  progress and the test are cancelled, fixtures that haven't started never start, and
  the ones that did are torn down as usual; the failure is then reported;
* the fixtures and the test share one :class:`contextvars.Context`.

Tests run for pytest-trio (``trio`` marker, trio mode) report errors the way pytest-trio
does: each fixture and the test run inside a nursery of their own, so an error arrives
wrapped in that nursery's exception group. Tests of nursery_io's own mode report a
single error as itself.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Final, Literal, NoReturn

import pytest

import nursery_io
from nursery_io._pytest.trio_mode import (
    ENV_VAR,
    PYTEST_TRIO_PLUGIN,
    TrioModeSession,
    env_requests_trio_mode,
    import_private_stand_ins,
    is_pytest_trio_plugin,
    take_over_pytest_trio,
)
from nursery_io._trio_mode import trio_mode_active
from nursery_io.abc import Clock, Instrument
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

__all__ = ["autojump_clock", "mock_clock", "nursery", "nursery_io_fixture"]

MARKER: Final = "nursery_io"
TRIO_MARKER: Final = "trio"
# Tests carrying one of these belong to another plugin, even in nursery_io mode (in trio
# mode, "trio" is ours).
_FOREIGN_ASYNC_MARKERS: Final = ("trio", "anyio", "asyncio")
_RUNNER_ATTR: Final = "_nursery_io_test_runner"
_FORCED_ATTR: Final = "_nursery_io_fixture"
# What pytest_trio.trio_fixture sets on a fixture function.
_PYTEST_TRIO_FORCED_ATTR: Final = "_force_trio_fixture"
_BUILTIN_ATTR: Final = "_nursery_io_builtin_fixture"
_BUILTIN_NAMES: Final = ("nursery", "mock_clock", "autojump_clock")

# A test is run either the nursery_io way or the pytest-trio way (see the module docs).
Flavour = Literal["nursery_io", "trio"]


def nursery_io_fixture(func: Callable[..., object]) -> Any:
    """Declare a function-scoped fixture that runs inside the test's run, even if it is
    a plain ``def`` (say, to call :func:`nursery_io.current_time`). The equivalent of
    ``pytest_trio.trio_fixture``; returns what ``pytest.fixture(func)`` returns."""
    setattr(func, _FORCED_ATTR, True)
    return pytest.fixture(func)


# ----- configuration -----


@dataclass
class _Settings:
    trio_mode: bool = False
    # How this plugin switched the session to trio mode (None: not by this plugin).
    trio_switch: TrioModeSession | None = None
    # pytest-trio's plugin runs alongside (no trio mode): its tests get its fixtures.
    pytest_trio_active: bool = False


_SETTINGS_KEY: Final = pytest.StashKey[_Settings]()


def _settings(config: pytest.Config) -> _Settings:
    return config.stash.setdefault(_SETTINGS_KEY, _Settings())


# With the environment switch, switch right away: if this plugin loads before pytest-trio's,
# its plugin then imports nursery_io as trio and nothing has to be undone.
_early_switch: TrioModeSession | None = None
if env_requests_trio_mode() and "trio" not in sys.modules:
    _early_switch = TrioModeSession.switch_on()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "nursery_io_mode",
        "run every async test and async fixture under nursery_io (tests marked for trio, "
        "anyio or asyncio are left alone)",
        type="bool",
        default=False,
    )
    parser.addini(
        "nursery_io_trio_mode",
        "trio mode: 'import trio' gives nursery_io, and pytest-trio suites (trio_mode, "
        "@pytest.mark.trio, trio_fixture) run on nursery_io",
        type="bool",
        default=False,
    )
    group = parser.getgroup("nursery_io")
    group.addoption(
        "--nursery-io-trio-mode",
        action="store_true",
        dest="nursery_io_trio_mode",
        default=False,
        help=f"trio mode: run this pytest-trio suite on nursery_io (also: {ENV_VAR}=1)",
    )


def _wants_trio_mode(config: pytest.Config) -> bool:
    return (
        trio_mode_active()
        or env_requests_trio_mode()
        or bool(getattr(config.known_args_namespace, "nursery_io_trio_mode", False))
        or bool(getattr(config.option, "nursery_io_trio_mode", False))
        or bool(config.getini("nursery_io_trio_mode"))
    )


def _switch_to_trio_mode(config: pytest.Config, parser: pytest.Parser) -> None:
    global _early_switch
    settings = _settings(config)
    if settings.trio_mode:
        return
    settings.trio_mode = True
    switch, _early_switch = _early_switch or TrioModeSession.switch_on(), None
    settings.trio_switch = switch
    import_private_stand_ins()
    take_over_pytest_trio(config.pluginmanager)
    # pytest-trio's settings, whether or not its plugin was loaded (-p no:trio).
    parser.addini("trio_mode", "run every async test as a trio test", type="bool")
    parser.addini("trio_run", "the run function for trio tests (only 'trio')", default="trio")
    if switch.stale_holders:
        names = ", ".join(sorted(switch.stale_holders))
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                "nursery_io trio mode: these modules imported the real trio before the "
                f"switch and still use it: {names}. Start pytest with 'python -m "
                "nursery_io run --as-trio -m pytest' so that trio is nursery_io from the start."
            ),
            stacklevel=2,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> None:
    # The earliest hook that sees the command line and the ini file, and it comes before
    # any conftest or test module is imported.
    if _wants_trio_mode(early_config):
        _switch_to_trio_mode(early_config, parser)


def pytest_configure(config: pytest.Config) -> None:
    settings = _settings(config)
    # A test that pytest-timeout fails mid-run gets the run's task tree printed first.
    from ._introspect import pytest_support

    if not config.pluginmanager.is_registered(pytest_support):
        config.pluginmanager.register(pytest_support, "nursery_io.task_dump")
    if not settings.trio_mode and trio_mode_active():
        # Registered too late for pytest_load_initial_conftests (a conftest's
        # pytest_plugins, say), in a process that is in trio mode already.
        _switch_to_trio_mode(config, config._parser)
    config.addinivalue_line(
        "markers",
        f"{MARKER}(run=None): run this async test (and its async fixtures) under "
        "nursery_io.run, or under the given run function with the same signature",
    )
    if settings.trio_mode:
        config.addinivalue_line(
            "markers",
            f"{TRIO_MARKER}(run=None): run this async test the pytest-trio way; in trio mode "
            "it runs on nursery_io",
        )
        run_name = config.getini("trio_run")
        if run_name != "trio":
            raise pytest.UsageError(
                f"trio_run = {run_name!r} can't be used in nursery_io's trio mode: tests "
                "run on nursery_io, which stands in for trio only. Remove the setting (or "
                "set it to 'trio'), or run this suite without trio mode."
            )
    else:
        settings.pytest_trio_active = any(
            is_pytest_trio_plugin(plugin) for plugin in config.pluginmanager.get_plugins()
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    settings = _settings(config)
    if settings.trio_switch is not None:
        # An in-process session (pytester) must not leave its trio alias behind.
        settings.trio_switch.switch_off()
        settings.trio_switch = None


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = _settings(config)
    mark_for_trio = settings.trio_mode and bool(config.getini("trio_mode"))
    if not mark_for_trio and not config.getini("nursery_io_mode"):
        return
    mark = getattr(pytest.mark, TRIO_MARKER if mark_for_trio else MARKER)
    for item in items:
        if not isinstance(item, pytest.Function) or _flavour(item, settings) is not None:
            continue
        if _is_foreign(item, settings):
            continue
        if inspect.iscoroutinefunction(_test_function(item)):
            item.add_marker(mark)


def _flavour(item: pytest.Item, settings: _Settings) -> Flavour | None:
    """How this plugin runs the test, or None if it doesn't."""
    if not isinstance(item, pytest.Function):
        return None
    if item.get_closest_marker(MARKER) is not None:
        return "nursery_io"
    if settings.trio_mode and item.get_closest_marker(TRIO_MARKER) is not None:
        return "trio"
    return None


def _is_foreign(item: pytest.Item, settings: _Settings) -> bool:
    return any(
        item.get_closest_marker(name) is not None
        for name in _FOREIGN_ASYNC_MARKERS
        if not (settings.trio_mode and name == TRIO_MARKER)
    )


def _mode_enabled(config: pytest.Config, settings: _Settings) -> bool:
    if settings.trio_mode and config.getini("trio_mode"):
        return True
    return bool(config.getini("nursery_io_mode"))


def _is_forced(func: object, settings: _Settings) -> bool:
    if getattr(func, _FORCED_ATTR, False):
        return True
    return settings.trio_mode and bool(getattr(func, _PYTEST_TRIO_FORCED_ATTR, False))


def _fail_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest, error: BaseException
) -> NoReturn:
    """Fail this fixture's setup the way pytest's own setup does: the error is cached, so
    that pytest's teardown bookkeeping for the fixture stays consistent."""
    __tracebackhide__ = True
    try:
        raise error
    except BaseException as exc:
        key = fixturedef.cache_key(request)  # type: ignore[arg-type]
        fixturedef.cached_result = (None, key, (exc, exc.__traceback__))
        raise


def _failure(message: str) -> BaseException:
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


def _scope_error(fixturedef: pytest.FixtureDef[Any], trio_texts: bool) -> BaseException:
    if trio_texts:
        return RuntimeError("Trio fixtures must be function-scope")
    return _failure(
        f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}, but "
        "nursery_io fixtures must be function-scoped: each test has its own run, "
        "and a fixture's tasks can't outlive it"
    )


def _not_ours_error(
    fixturedef: pytest.FixtureDef[Any], item: pytest.Item, trio_texts: bool
) -> BaseException:
    if trio_texts:
        return RuntimeError("Trio fixtures can only be used by Trio tests")
    return _failure(
        f"fixture {fixturedef.argname!r} must run inside nursery_io, but test "
        f"{item.name!r} is not a nursery_io test. Make the test 'async def' (in "
        f"nursery_io mode) or mark it with @pytest.mark.{MARKER}."
    )


def _builtin_name(func: object) -> str | None:
    """``nursery``/``mock_clock``/``autojump_clock`` if ``func`` is ours or pytest-trio's."""
    own: str | None = getattr(func, _BUILTIN_ATTR, None)
    if own is not None:
        return own
    name = getattr(func, "__name__", None)
    if getattr(func, "__module__", None) == PYTEST_TRIO_PLUGIN and name in _BUILTIN_NAMES:
        return str(name)
    return None


def _pytest_trio_clock(name: str) -> object:
    """What pytest-trio's own ``mock_clock``/``autojump_clock`` fixture returns."""
    clock_type = sys.modules[PYTEST_TRIO_PLUGIN].MockClock
    return clock_type() if name == "mock_clock" else clock_type(autojump_threshold=0)


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


def _cache(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest, value: object
) -> object:
    key = fixturedef.cache_key(request)  # type: ignore[arg-type]
    fixturedef.cached_result = (value, key, None)
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> object | None:
    settings = _settings(request.config)
    # For a wider-scoped fixture request.node is the module or session; we want the test.
    item = getattr(request, "_pyfuncitem", request.node)
    flavour = _flavour(item, settings)
    if flavour is None:
        return _setup_for_another_test(fixturedef, request, item, settings)
    func = fixturedef.func
    builtin = _builtin_name(func)
    if builtin is not None and not getattr(func, _BUILTIN_ATTR, None):
        # pytest-trio's definition hides ours (both plugins active): this test is ours.
        if builtin != "nursery":
            return _cache(fixturedef, request, _OWN_BUILTINS[builtin]())
        func = _nursery_fixture
    trio_texts = flavour == "trio"
    if not (_is_async_callable(func) or _is_forced(func, settings)):
        # A sync fixture is deferred too if it uses a deferred one; only function-scoped
        # fixtures can (pytest forbids wider scopes from using narrower ones).
        if not fixturedef.argnames or fixturedef.scope != "function":
            return None
        kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
        if not any(isinstance(value, DeferredFixture) for value in kwargs.values()):
            return None
    else:
        if fixturedef.scope != "function":
            _fail_setup(fixturedef, request, _scope_error(fixturedef, trio_texts))
        kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    if func is _nursery_fixture:
        return _cache(fixturedef, request, _NURSERY)
    if _resolve_fixture_function is not None:
        func = _resolve_fixture_function(fixturedef, request)
    placeholder = DeferredFixture(fixturedef.argname, func, kwargs)
    item.stash.setdefault(_DEFERRED_KEY, []).append(placeholder)
    return _cache(fixturedef, request, placeholder)


def _setup_for_another_test(
    fixturedef: pytest.FixtureDef[Any],
    request: pytest.FixtureRequest,
    item: pytest.Item,
    settings: _Settings,
) -> object | None:
    """A fixture requested by a test this plugin doesn't run."""
    func = fixturedef.func
    builtin: str | None = getattr(func, _BUILTIN_ATTR, None)
    if builtin is not None and settings.pytest_trio_active:
        # Our definition hides pytest-trio's: give the test what pytest-trio would.
        if builtin == "nursery":
            return None  # marked as a trio_fixture: pytest-trio's own hook handles it
        return _cache(fixturedef, request, _pytest_trio_clock(builtin))
    forced = _is_forced(func, settings)
    if not (forced or _is_async_callable(func)):
        return None
    if not forced and (_is_foreign(item, settings) or not _mode_enabled(request.config, settings)):
        return None  # not ours to handle: another plugin may, or pytest reports it
    trio_texts = settings.trio_mode and not getattr(func, _FORCED_ATTR, False)
    if fixturedef.scope != "function":
        _fail_setup(fixturedef, request, _scope_error(fixturedef, trio_texts))
    _fail_setup(fixturedef, request, _not_ours_error(fixturedef, item, trio_texts))


# ----- the test call -----


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    flavour = _flavour(pyfuncitem, _settings(pyfuncitem.config))
    if flavour is None:
        return None
    if flavour == "nursery_io":
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
        if flavour == "trio":
            # pytest-trio fails every sync test that carries its marker.
            pytest.fail(f"test function `{pyfuncitem!r}` is marked trio but is not async")
        if any(mark.name == MARKER for mark in pyfuncitem.own_markers):
            pytest.fail(
                f"test {pyfuncitem.name!r} is marked {MARKER} but is not an 'async def' function",
                pytrace=False,
            )
        return None  # marked through its module or class: a plain test runs as usual
    runner = _make_test_runner(pyfuncitem, test_fn, flavour)
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


def _make_test_runner(
    item: pytest.Function, test_fn: Callable[..., Any], flavour: Flavour
) -> Callable[..., None]:
    run = _choose_run(item, flavour)
    deferred = list(item.stash.get(_DEFERRED_KEY, ()))
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
        test_run = _TestRun(deferred, test_fn, args, kwargs, flavour)
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


class _TestRun:
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
    async def _run_node(self, node: _Node) -> None:
        __tracebackhide__ = True
        assert self.context is not None
        # Every node runs in the one shared context; the assignment takes effect at the
        # task's next step, hence the schedule point.
        current_task().context = self.context
        await cancel_shielded_checkpoint()
        try:
            if self.wrap_errors or any(value is _NURSERY for value in node.kwargs.values()):
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


# ----- built-in fixtures -----


def _nursery_fixture() -> nursery_io.Nursery:
    """A nursery for the test (or fixture) that asks for it, open for as long as it runs.

    Each requester gets its own nursery, owned by its own task: for the test, the nursery's
    tasks are cancelled when the test returns; for a fixture, after its teardown. A task
    in it that raises cancels the requester and fails the test with that error.
    """
    # Only pytest-trio calls this: when this definition hides its own `nursery` (both
    # plugins active), it serves pytest-trio's tests as a trio_fixture and must return
    # pytest-trio's marker value. nursery_io's plugin never calls it.
    placeholder: Any = getattr(
        sys.modules.get(PYTEST_TRIO_PLUGIN), "NURSERY_FIXTURE_PLACEHOLDER", None
    )
    if placeholder is None:
        raise AssertionError("unreachable: the nursery_io plugin supplies this fixture's value")
    return placeholder  # type: ignore[no-any-return]


# Forced: a plain test asking for it gets our explanation, not pytest's generic one; and
# for pytest-trio it is a trio_fixture like its own `nursery`.
setattr(_nursery_fixture, _FORCED_ATTR, True)
setattr(_nursery_fixture, _PYTEST_TRIO_FORCED_ATTR, True)
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


_OWN_BUILTINS: Final[dict[str, Callable[[], object]]] = {
    "nursery": _nursery_fixture,
    "mock_clock": _mock_clock_fixture,
    "autojump_clock": _autojump_clock_fixture,
}
for _name, _builtin in _OWN_BUILTINS.items():
    setattr(_builtin, _BUILTIN_ATTR, _name)
del _name, _builtin

nursery = pytest.fixture(name="nursery")(_nursery_fixture)
mock_clock = pytest.fixture(name="mock_clock")(_mock_clock_fixture)
autojump_clock = pytest.fixture(name="autojump_clock")(_autojump_clock_fixture)
