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

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import pytest

from nursery_io._pytest.fixtures import (
    BUILTIN_ATTR,
    DEFERRED_KEY,
    FORCED_ATTR,
    NURSERY,
    OWN_BUILTINS,
    PYTEST_TRIO_FORCED_ATTR,
    DeferredFixture,
    autojump_clock_fixture,
    mock_clock_fixture,
    nursery_fixture,
)
from nursery_io._pytest.run import MARKER, RUNNER_ATTR, TRIO_MARKER, Flavour, make_test_runner
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

_resolve_fixture_function: Callable[[Any, Any], Callable[..., Any]] | None
try:  # pytest's own helper binds fixtures defined as methods of a test class.
    from _pytest.fixtures import resolve_fixture_function as _resolve_fixture_function
except ImportError:  # pragma: no cover - depends on pytest internals
    _resolve_fixture_function = None

__all__ = ["autojump_clock", "mock_clock", "nursery", "nursery_io_fixture"]

# Tests carrying one of these belong to another plugin, even in nursery_io mode (in trio
# mode, "trio" is ours).
_FOREIGN_ASYNC_MARKERS: Final = ("trio", "anyio", "asyncio")
_BUILTIN_NAMES: Final = tuple(OWN_BUILTINS)


def nursery_io_fixture(func: Callable[..., object]) -> Any:
    """Declare a function-scoped fixture that runs inside the test's run, even if it is
    a plain ``def`` (say, to call :func:`nursery_io.current_time`). The equivalent of
    ``pytest_trio.trio_fixture``; returns what ``pytest.fixture(func)`` returns."""
    setattr(func, FORCED_ATTR, True)
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
    if getattr(func, FORCED_ATTR, False):
        return True
    return settings.trio_mode and bool(getattr(func, PYTEST_TRIO_FORCED_ATTR, False))


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
    own: str | None = getattr(func, BUILTIN_ATTR, None)
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
    if builtin is not None and not getattr(func, BUILTIN_ATTR, None):
        # pytest-trio's definition hides ours (both plugins active): this test is ours.
        if builtin != "nursery":
            return _cache(fixturedef, request, OWN_BUILTINS[builtin]())
        func = nursery_fixture
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
    if func is nursery_fixture:
        return _cache(fixturedef, request, NURSERY)
    if _resolve_fixture_function is not None:
        func = _resolve_fixture_function(fixturedef, request)
    placeholder = DeferredFixture(fixturedef.argname, func, kwargs)
    item.stash.setdefault(DEFERRED_KEY, []).append(placeholder)
    return _cache(fixturedef, request, placeholder)


def _setup_for_another_test(
    fixturedef: pytest.FixtureDef[Any],
    request: pytest.FixtureRequest,
    item: pytest.Item,
    settings: _Settings,
) -> object | None:
    """A fixture requested by a test this plugin doesn't run."""
    func = fixturedef.func
    builtin: str | None = getattr(func, BUILTIN_ATTR, None)
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
    trio_texts = settings.trio_mode and not getattr(func, FORCED_ATTR, False)
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
    if getattr(test_fn, RUNNER_ATTR, False):
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
    runner = make_test_runner(pyfuncitem, test_fn, flavour)
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


# ----- built-in fixtures (their functions: nursery_io/_pytest/fixtures.py) -----

nursery = pytest.fixture(name="nursery")(nursery_fixture)
mock_clock = pytest.fixture(name="mock_clock")(mock_clock_fixture)
autojump_clock = pytest.fixture(name="autojump_clock")(autojump_clock_fixture)
