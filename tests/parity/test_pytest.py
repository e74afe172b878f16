"""Side by side through pytest: one scenario file, run by pytest-trio and by our plugin.

The other files in tests/parity/ compare ``trio.run`` with ``nursery_io.run`` directly. This
module goes through the pytest machinery as well: async fixtures that keep a nursery open
across their ``yield``, background tasks, the built-in ``nursery`` and ``autojump_clock``
fixtures, teardown order, and failures reported to pytest. The scenario file below is
written once against ``lib`` (imported by its conftest from an environment variable) and
run in two subprocesses:

* ``trio``: pytest-trio in ``trio_mode``, our plugin disabled;
* ``nursery_io``: our plugin in ``nursery_io_mode``, pytest-trio disabled.

Each session writes a JSON trace (what the fixtures and tests recorded, plus pytest's
report for every phase); the two traces must be identical.

Trio's scheduler shuffles tasks within a batch, so the scenarios order events with
``wait_all_tasks_blocked``, events and channels, never with "which runnable task goes
first". Both plugins set a test's independent fixtures up (and tear them down)
concurrently; the last test here checks that on a pair of independent fixtures.
tests/test_pytest_trio_suite.py runs a whole pytest-trio-style suite three ways.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest_plugins = ["pytester"]

CONFTEST = '''
import importlib
import json
import os

import pytest

LIB_NAME = os.environ["SIDE_BY_SIDE_LIB"]
lib = importlib.import_module(LIB_NAME)
testing = importlib.import_module(LIB_NAME + ".testing")
lowlevel = importlib.import_module(LIB_NAME + ".lowlevel")

TRACES = {}


def shape(exc):
    """An exception as data both libraries agree on: groups become sorted lists of their
    members; messages are kept only for builtin exceptions (the scenarios' own), since the
    libraries word theirs differently."""
    if isinstance(exc, BaseExceptionGroup):
        members = sorted((shape(e) for e in exc.exceptions), key=repr)
        return ["group", type(exc).__name__, members]
    if type(exc).__module__ == "builtins":
        return [type(exc).__name__, str(exc)]
    return [type(exc).__name__]


@pytest.fixture
def trace(request):
    return TRACES.setdefault(request.node.name, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    entry = ["pytest reports", call.when, report.outcome]
    if call.excinfo is not None:
        entry.append(shape(call.excinfo.value))
    TRACES.setdefault(item.name, []).append(entry)


def pytest_sessionfinish(session):
    with open(os.environ["SIDE_BY_SIDE_TRACE"], "w") as file:
        json.dump(TRACES, file, indent=1)
'''

SCENARIOS = """
import contextvars

import pytest
import sniffio

from conftest import LIB_NAME, lib, lowlevel, shape, testing

request_id = contextvars.ContextVar("request_id", default="unset")


def channel_stats(channel):
    stats = channel.statistics()
    names = (
        "current_buffer_used", "max_buffer_size", "open_send_channels",
        "open_receive_channels", "tasks_waiting_send", "tasks_waiting_receive",
    )
    return {name: getattr(stats, name) for name in names}


def attempt(trace, label, fn):
    try:
        result = fn()
    except Exception as exc:
        trace.append([label, shape(exc)])
    else:
        trace.append([label, "ok", result])


# ----- fixture lifecycle: a service with a background worker, and a client of it -----


@pytest.fixture
async def service(trace):
    trace.append(["service setup starts", sniffio.current_async_library() == LIB_NAME])
    send, receive = lib.open_memory_channel(0)

    async def worker(task_status=lib.TASK_STATUS_IGNORED):
        async with receive:
            task_status.started("worker started")
            async for item in receive:
                trace.append(["worker got", item, request_id.get()])
            trace.append("worker saw the end of the channel")
        trace.append("worker exits")

    async with lib.open_nursery() as nursery:
        trace.append(await nursery.start(worker))
        # The worker has its own copy of the context already; the test shares this one.
        request_id.set("set by the service fixture")
        async with send:
            yield send
            trace.append("service teardown starts")
        # Leaving `async with send` closed the channel: the worker finishes on its own.
    trace.append("service nursery closed")


@pytest.fixture
async def client(service, trace):
    trace.append(["client setup", request_id.get()])
    await service.send("hello from client setup")
    await testing.wait_all_tasks_blocked()
    yield service
    trace.append("client teardown starts")
    await service.send("goodbye from client teardown")
    await testing.wait_all_tasks_blocked()
    trace.append("client teardown ends")


async def test_fixture_lifecycle(client, nursery, trace):
    trace.append(["test starts", request_id.get()])

    async def background():
        try:
            await lib.sleep_forever()
        finally:
            trace.append("the test's own background task is cancelled after it returns")

    nursery.start_soon(background)
    await client.send("from the test")
    await testing.wait_all_tasks_blocked()
    trace.append("test returns")


# ----- channels: close and clone -----


@pytest.fixture
async def buffered_channel():
    await lowlevel.checkpoint()
    return lib.open_memory_channel(1)


async def test_channel_close_and_clone(buffered_channel, trace):
    send, receive = buffered_channel
    send_clone = send.clone()
    trace.append(["two senders", channel_stats(send)])
    await send.send("a")
    attempt(trace, "send_nowait into a full buffer", lambda: send.send_nowait("b"))
    await send.aclose()
    attempt(trace, "send_nowait on a closed clone", lambda: send.send_nowait("c"))
    attempt(trace, "clone a closed clone", send.clone)
    trace.append(["one sender left", channel_stats(receive)])
    attempt(trace, "buffered value survives its sender's close", receive.receive_nowait)

    async def reader(channel, label):
        try:
            trace.append([label, "got", await channel.receive()])
        except (lib.EndOfChannel, lib.ClosedResourceError) as exc:
            trace.append([label, shape(exc)])

    async with lib.open_nursery() as nursery:
        nursery.start_soon(reader, receive, "reader waiting for the last sender")
        await testing.wait_all_tasks_blocked()
        trace.append(["receiver waiting", channel_stats(receive)])
        send_clone.close()
    attempt(trace, "receive_nowait once every sender is closed", receive.receive_nowait)
    await receive.aclose()
    attempt(trace, "receive_nowait on a closed receiver", receive.receive_nowait)

    send, receive = lib.open_memory_channel(0)
    receive_clone = receive.clone()

    async def sender(value):
        try:
            await send.send(value)
            trace.append(["sent", value])
        except lib.BrokenResourceError as exc:
            trace.append(["sender", value, shape(exc)])

    async with lib.open_nursery() as nursery:
        nursery.start_soon(reader, receive_clone, "reader on a clone that gets closed")
        await testing.wait_all_tasks_blocked()
        receive_clone.close()
        await testing.wait_all_tasks_blocked()
        nursery.start_soon(sender, "x")
        await testing.wait_all_tasks_blocked()
        trace.append(["sender waiting, one receiver open", channel_stats(send)])
        receive.close()
    attempt(trace, "send_nowait with every receiver closed", lambda: send.send_nowait("y"))
    trace.append(["all closed", channel_stats(send)])

    send, receive = lib.open_memory_channel(float("inf"))
    async with send:
        for i in range(3):
            send.send_nowait(i)
    trace.append(["async for until the end", [item async for item in receive]])


# ----- lock fairness -----


async def test_lock_and_semaphore_fairness(nursery, trace):
    lock = lib.Lock()
    scopes = {}

    async def lock_waiter(i):
        with lib.CancelScope() as scope:
            scopes[i] = scope
            async with lock:
                trace.append(["holds the lock", i])
                await lowlevel.checkpoint()  # the others run, none can take the lock
            return
        trace.append(["gave up waiting", i])

    await lock.acquire()
    for i in range(5):
        nursery.start_soon(lock_waiter, i)
        await testing.wait_all_tasks_blocked()
    stats = lock.statistics()
    i_own_it = stats.owner is lowlevel.current_task()
    trace.append(["queued", stats.tasks_waiting, stats.locked, i_own_it])
    scopes[2].cancel()
    await testing.wait_all_tasks_blocked()
    trace.append(["queued after one gave up", lock.statistics().tasks_waiting])
    lock.release()
    # Released straight to the first waiter: the releaser can't barge back in.
    attempt(trace, "acquire_nowait right after release", lock.acquire_nowait)
    await testing.wait_all_tasks_blocked()
    stats = lock.statistics()
    trace.append(["lock at the end", stats.locked, stats.tasks_waiting])

    semaphore = lib.Semaphore(2)

    async def semaphore_user(i, release):
        async with semaphore:
            trace.append(["holds a semaphore token", i])
            await release.wait()

    releases = [lib.Event() for _ in range(5)]
    for i in range(5):
        nursery.start_soon(semaphore_user, i, releases[i])
        await testing.wait_all_tasks_blocked()
    trace.append(["semaphore", semaphore.value, semaphore.statistics().tasks_waiting])
    for i in (1, 0, 3, 2, 4):
        releases[i].set()
        await testing.wait_all_tasks_blocked()
    trace.append(["semaphore at the end", semaphore.value])


# ----- cancellation during send and receive -----


async def test_cancellation_during_send_and_receive(autojump_clock, trace):
    start = lib.current_time()

    def now():
        return lib.current_time() - start

    send, receive = lib.open_memory_channel(0)
    with lib.move_on_after(5) as scope:
        await send.send("nobody receives this")
    trace.append(["send timed out", scope.cancelled_caught, now()])
    trace.append(["after the cancelled send", channel_stats(send)])
    attempt(trace, "the cancelled send left nothing", receive.receive_nowait)
    with lib.move_on_after(3) as scope:
        await receive.receive()
    trace.append(["receive timed out", scope.cancelled_caught, now()])

    async def reader(label, scope):
        with scope:
            trace.append([label, "got", await receive.receive()])
            return
        trace.append([label, "cancelled while waiting"])

    async with lib.open_nursery() as nursery:
        first = lib.CancelScope()
        nursery.start_soon(reader, "first reader", first)
        await testing.wait_all_tasks_blocked()
        nursery.start_soon(reader, "second reader", lib.CancelScope())
        await testing.wait_all_tasks_blocked()
        first.cancel()
        await testing.wait_all_tasks_blocked()
        await send.send("goes to the reader still waiting")
    trace.append(["after the readers", channel_stats(send)])

    small_send, small_receive = lib.open_memory_channel(1)
    await small_send.send(1)
    with lib.move_on_after(1) as scope:
        await small_send.send(2)
    trace.append(["send into a full buffer timed out", scope.cancelled_caught, now()])
    attempt(trace, "first buffered value", small_receive.receive_nowait)
    attempt(trace, "nothing else buffered", small_receive.receive_nowait)

    try:
        with lib.fail_after(2):
            await receive.receive()
    except lib.TooSlowError as exc:
        trace.append(["fail_after", shape(exc), now()])

    async def late_reader():
        await lib.sleep(10)
        trace.append(["late reader got", await receive.receive(), now()])

    with lib.move_on_after(1) as outer:
        with lib.CancelScope(shield=True):
            async with lib.open_nursery() as nursery:
                nursery.start_soon(late_reader)
                await send.send("sent under a shield")
    trace.append(["shielded send", outer.cancel_called, outer.cancelled_caught, now()])


# ----- exception groups from nurseries -----


async def raise_now(exc):
    raise exc


async def test_nursery_exception_groups(trace):
    async def sleeper(label):
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            trace.append([label, "cancelled"])
            raise

    async def record(label, body):
        try:
            result = await body()
        except BaseException as exc:
            trace.append([label, "raised", shape(exc)])
        else:
            trace.append([label, "returned", result])

    async def one_child_fails():
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "sibling of the failing child")
            await testing.wait_all_tasks_blocked()
            nursery.start_soon(raise_now, ValueError("child"))
            await lib.sleep_forever()

    async def two_children_fail():
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raise_now, ValueError("first child"))
            nursery.start_soon(raise_now, KeyError("second child"))

    async def body_fails():
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "child of a failing body")
            await testing.wait_all_tasks_blocked()
            raise RuntimeError("body")

    async def body_and_child_fail():
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raise_now, ValueError("child"))
            with lib.CancelScope(shield=True):
                await testing.wait_all_tasks_blocked()
            raise RuntimeError("body")

    async def nested():
        async def inner():
            async with lib.open_nursery() as nursery:
                nursery.start_soon(raise_now, ValueError("innermost"))

        async with lib.open_nursery() as nursery:
            nursery.start_soon(inner)

    async def cleanup_fails_during_cancellation():
        async def bad_cleanup():
            try:
                await lib.sleep_forever()
            finally:
                raise KeyError("raised while being cancelled")

        async with lib.open_nursery() as nursery:
            nursery.start_soon(bad_cleanup)
            await testing.wait_all_tasks_blocked()
            nursery.start_soon(raise_now, ValueError("child"))

    async def cancelled_from_outside():
        with lib.CancelScope() as scope:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper, "child of a cancelled nursery")
                await testing.wait_all_tasks_blocked()
                scope.cancel()
        return ["cancelled_caught", scope.cancelled_caught]

    async def start_fails_before_started():
        async def fails(task_status=lib.TASK_STATUS_IGNORED):
            raise ValueError("before started")

        async with lib.open_nursery() as nursery:
            try:
                await nursery.start(fails)
            except ValueError as exc:
                trace.append(["start raised", shape(exc)])
            return "nursery still usable"

    async def fails_after_started():
        async def fails(task_status=lib.TASK_STATUS_IGNORED):
            task_status.started("started value")
            await lowlevel.checkpoint()
            raise ValueError("after started")

        async with lib.open_nursery() as nursery:
            trace.append(["start returned", await nursery.start(fails)])

    async def except_star_splits():
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(raise_now, ValueError("handled"))
                nursery.start_soon(raise_now, KeyError("not handled"))
        except* ValueError as group:
            trace.append(["except* caught", shape(group)])

    for body in (
        one_child_fails, two_children_fail, body_fails, body_and_child_fail, nested,
        cleanup_fails_during_cancellation, cancelled_from_outside,
        start_fails_before_started, fails_after_started, except_star_splits,
    ):
        await record(body.__name__, body)


async def test_error_group_reported_to_pytest(trace):
    trace.append("the test fails with a group of two errors")
    async with lib.open_nursery() as nursery:
        nursery.start_soon(raise_now, ValueError("one"))
        nursery.start_soon(raise_now, KeyError("two"))


# ----- failures in fixtures -----


@pytest.fixture
async def crashing_service(trace):
    trigger = lib.Event()

    async def crasher():
        await trigger.wait()
        trace.append("background task raises")
        raise ValueError("background task crashed")

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(crasher)
            try:
                yield trigger
            except BaseException as exc:
                trace.append(["the fixture's yield raised", shape(exc)])
                raise
            trace.append("unreachable: the fixture resumed normally")
    except BaseException as exc:
        trace.append(["the fixture's nursery raised", shape(exc)])
        raise


async def test_background_crash_in_a_fixture(crashing_service, trace):
    crashing_service.set()
    try:
        await lib.sleep_forever()
    except lib.Cancelled:
        trace.append("the test is cancelled")
        raise


@pytest.fixture
async def broken_setup(trace):
    trace.append("broken fixture starts its setup")
    await lowlevel.checkpoint()
    raise KeyError("setup failed")
    yield  # an async generator fixture that never reaches its yield


@pytest.fixture
async def depends_on_broken(broken_setup, trace):
    trace.append("unreachable: a fixture using the broken one was set up")


async def test_fixture_setup_fails(depends_on_broken, trace):
    trace.append("unreachable: the test ran")


@pytest.fixture
async def broken_teardown(trace):
    yield "value"
    trace.append("broken teardown runs")
    await lowlevel.checkpoint()
    raise RuntimeError("teardown failed")


@pytest.fixture
async def after_broken_teardown(broken_teardown, trace):
    yield broken_teardown
    trace.append("the fixture set up later is torn down first")


async def test_fixture_teardown_fails(after_broken_teardown, trace):
    trace.append(["the test body passes", after_broken_teardown])
"""

# What every scenario must end as, in both sessions (a check that the traces are equal
# because both behave correctly, not because both broke the same way).
EXPECTED_CALL_OUTCOMES = {
    "test_fixture_lifecycle": "passed",
    "test_channel_close_and_clone": "passed",
    "test_lock_and_semaphore_fairness": "passed",
    "test_cancellation_during_send_and_receive": "passed",
    "test_nursery_exception_groups": "passed",
    "test_error_group_reported_to_pytest": "failed",
    "test_background_crash_in_a_fixture": "failed",
    "test_fixture_setup_fails": "failed",
    "test_fixture_teardown_fails": "failed",
}

# Only the options that pick the plugin differ between the two sessions.
ENGINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "trio": ("trio_mode = true", ("-p", "trio", "-p", "no:nursery_io")),
    "nursery_io": ("nursery_io_mode = true", ("-p", "no:trio", "-p", "nursery_io")),
}


def run_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, lib: str
) -> tuple[pytest.RunResult, dict[str, list[Any]]]:
    """Run the scenario files under ``lib``'s plugin; return pytest's result and the trace."""
    mode, options = ENGINES[lib]
    pytester.makeini(f"[pytest]\n{mode}\nfilterwarnings = error\nxfail_strict = true\n")
    trace_file = pytester.path / f"trace-{lib}.json"
    monkeypatch.setenv("SIDE_BY_SIDE_LIB", lib)
    monkeypatch.setenv("SIDE_BY_SIDE_TRACE", str(trace_file))
    result = pytester.runpytest_subprocess(
        *options, "-p", "no:anyio", "-p", "no:cacheprovider", "-v"
    )
    assert trace_file.exists(), f"the {lib} session wrote no trace:\n{result.stdout.str()}"
    traces: dict[str, list[Any]] = json.loads(trace_file.read_text())
    return result, traces


def without_pytest_trio_wrapper(trace: list[Any]) -> list[Any]:
    """pytest-trio runs each fixture and the test inside a nursery of its own and reports
    what that nursery raised, so a failure reaches pytest wrapped in one more single-member
    ExceptionGroup. Our plugin reports a single error as itself (docs/reference-pytest.rst).
    Check that the extra layer is exactly that, and remove it."""
    unwrapped = []
    for entry in trace:
        if entry[:3] == ["pytest reports", "call", "failed"]:
            kind, group_type, members = entry[3]
            assert (kind, group_type, len(members)) == ("group", "ExceptionGroup", 1), entry
            unwrapped.append([*entry[:3], members[0]])
        else:
            unwrapped.append(entry)
    return unwrapped


def call_outcome(trace: list[Any]) -> str | None:
    for entry in trace:
        if entry[:2] == ["pytest reports", "call"]:
            return str(entry[2])
    return None


def test_same_trace_under_pytest_trio_and_nursery_io(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_scenarios=SCENARIOS)
    trio_result, trio_traces = run_session(pytester, monkeypatch, "trio")
    our_result, our_traces = run_session(pytester, monkeypatch, "nursery_io")

    expected_counts = {"passed": 0, "failed": 0}
    for outcome in EXPECTED_CALL_OUTCOMES.values():
        expected_counts[outcome] += 1
    for result in (trio_result, our_result):
        result.assert_outcomes(**expected_counts)

    assert sorted(trio_traces) == sorted(EXPECTED_CALL_OUTCOMES)
    assert sorted(our_traces) == sorted(EXPECTED_CALL_OUTCOMES)
    mismatches = []
    for name, expected in EXPECTED_CALL_OUTCOMES.items():
        assert call_outcome(trio_traces[name]) == expected, (name, trio_traces[name])
        trio_trace = without_pytest_trio_wrapper(trio_traces[name])
        if our_traces[name] != trio_trace:
            mismatches.append(
                f"{name}:\n  trio:       {trio_trace}\n  nursery_io: {our_traces[name]}"
            )
    assert not mismatches, "\n".join(mismatches)
    # Spot checks that the scenarios exercised what they claim (the comparison alone
    # would also pass if both sessions skipped the interesting parts).
    lifecycle = our_traces["test_fixture_lifecycle"]
    assert lifecycle.index("client teardown ends") < lifecycle.index("service teardown starts")
    assert lifecycle[-3] == "service nursery closed"
    assert ["test starts", "set by the service fixture"] in lifecycle
    crash = our_traces["test_background_crash_in_a_fixture"]
    assert crash[-2] == [
        "pytest reports",
        "call",
        "failed",
        ["group", "ExceptionGroup", [["ValueError", "background task crashed"]]],
    ]


DIFFERENCE = """
import pytest

from conftest import lowlevel


@pytest.fixture
async def first(trace):
    trace.append("first: setup starts")
    await lowlevel.checkpoint()
    trace.append("first: ready")
    yield
    trace.append("first: torn down")


@pytest.fixture
async def second(trace):
    trace.append("second: setup starts")
    await lowlevel.checkpoint()
    trace.append("second: ready")
    yield
    trace.append("second: torn down")


async def test_independent_fixtures(first, second, trace):
    trace.append("test")
"""


def test_independent_fixtures_set_up_and_torn_down_concurrently(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both plugins start every fixture of the test at once: two independent fixtures both
    # start their setup before either is ready, and both tear down once the test is over.
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_difference=DIFFERENCE)
    for lib in ENGINES:
        result, lib_traces = run_session(pytester, monkeypatch, lib)
        result.assert_outcomes(passed=1)
        trace = [
            entry for entry in lib_traces["test_independent_fixtures"] if isinstance(entry, str)
        ]
        assert set(trace[:2]) == {"first: setup starts", "second: setup starts"}, (lib, trace)
        assert set(trace[2:4]) == {"first: ready", "second: ready"}, (lib, trace)
        assert trace[4] == "test", (lib, trace)
        assert set(trace[5:]) == {"first: torn down", "second: torn down"}, (lib, trace)
