"""Cancel scopes: cancellation, shielding, deadlines, nesting, and the Cancelled exception."""

from __future__ import annotations

import math
import pickle
import sys
import threading
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import MockClock, wait_all_tasks_blocked

# ----- basics -----


async def test_cancel_is_level_triggered() -> None:
    hits = 0
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            try:
                await nursery_io.sleep(0)
            except nursery_io.Cancelled:
                hits += 1  # swallowed by hand: the next checkpoint raises again
        await lowlevel.checkpoint()
        pytest.fail("not reached")
    assert hits == 3
    assert scope.cancel_called and scope.cancelled_caught


async def test_cancel_before_entering() -> None:
    scope = nursery_io.CancelScope()
    scope.cancel()
    assert scope.cancel_called
    reached = []
    with scope:
        reached.append("body starts")  # entering isn't a checkpoint
        await nursery_io.sleep(0)
        reached.append("not reached")
    assert reached == ["body starts"]
    assert scope.cancelled_caught


async def test_cancelled_caught_only_when_a_cancelled_arrived() -> None:
    with nursery_io.CancelScope() as scope:
        scope.cancel()
    assert scope.cancel_called
    assert not scope.cancelled_caught


async def test_cancel_from_another_task_wakes_a_sleeper() -> None:
    async with nursery_io.open_nursery() as nursery:
        scope = nursery_io.CancelScope()

        async def sleeper() -> None:
            with scope:
                await nursery_io.sleep_forever()

        nursery.start_soon(sleeper)
        await wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught


async def test_cancel_from_another_thread_via_token() -> None:
    token = lowlevel.current_token()
    with nursery_io.CancelScope() as scope:
        threading.Thread(target=token.run_sync_soon, args=(scope.cancel,)).start()
        await nursery_io.sleep_forever()
    assert scope.cancelled_caught


async def test_cancelled_is_not_an_exception() -> None:
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        try:
            await nursery_io.sleep(0)
        except Exception:  # must not catch Cancelled
            pytest.fail("Cancelled caught by 'except Exception'")
    assert scope.cancelled_caught
    assert issubclass(nursery_io.Cancelled, BaseException)
    assert not issubclass(nursery_io.Cancelled, Exception)


async def test_other_exceptions_pass_through_cancelled_scope() -> None:
    with pytest.raises(KeyError):
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            raise KeyError
    assert not scope.cancelled_caught


async def test_scope_strips_cancelled_from_a_group_and_keeps_the_rest() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled:
            raise KeyError("cleanup") from None

    with pytest.RaisesGroup(KeyError) as info:
        with nursery_io.CancelScope() as scope:
            async with nursery_io.open_nursery(strict_exception_groups=True) as nursery:
                nursery.start_soon(fails_when_cancelled)
                nursery.start_soon(nursery_io.sleep_forever)
                await wait_all_tasks_blocked()
                scope.cancel()
    assert scope.cancelled_caught
    assert not info.value.subgroup(nursery_io.Cancelled)


async def test_reentering_a_scope_is_an_error() -> None:
    scope = nursery_io.CancelScope()
    with scope:
        pass
    with pytest.raises(RuntimeError, match="single 'with' block"):
        with scope:
            pass
    # entering while already inside is also re-entry
    scope2 = nursery_io.CancelScope()
    with scope2:
        with pytest.raises(RuntimeError, match="single 'with' block"):
            with scope2:
                pass


async def test_scope_outside_a_task_is_an_error() -> None:
    errors = []

    def callback() -> None:
        try:
            with nursery_io.CancelScope():
                pass
        except RuntimeError as exc:
            errors.append(str(exc))

    lowlevel.current_token().run_sync_soon(callback)
    await wait_all_tasks_blocked()
    assert errors == ["cancel scopes can only be entered from inside a task"]


async def test_repr_reflects_state() -> None:
    scope = nursery_io.CancelScope(deadline=nursery_io.current_time() + 12.5)
    assert repr(scope).endswith(", unbound, deadline is 12.50 seconds from now>")
    with scope:
        assert "active" in repr(scope)
        scope.cancel()
        assert "cancelled" in repr(scope)
    assert "exited" in repr(scope)


# ----- after exit -----


async def test_cancelling_an_exited_scope_does_nothing() -> None:
    with nursery_io.CancelScope() as scope:
        await nursery_io.sleep(0)
    scope.cancel()
    assert scope.cancel_called
    assert not scope.cancelled_caught
    await nursery_io.sleep(0)  # not affected
    scope.deadline = -math.inf  # also harmless
    await nursery_io.sleep(0)
    assert lowlevel.current_statistics().seconds_to_next_deadline == math.inf


# ----- nesting -----


async def test_outermost_cancelled_scope_catches() -> None:
    with nursery_io.CancelScope() as outer:
        with nursery_io.CancelScope() as middle:
            with nursery_io.CancelScope() as inner:
                inner.cancel()
                outer.cancel()
                try:
                    await nursery_io.sleep(0)
                except nursery_io.Cancelled as exc:
                    # it carries the reason of the scope that will catch it
                    assert exc.source == "explicit"
                    raise
    assert outer.cancelled_caught
    assert not middle.cancelled_caught
    assert not inner.cancelled_caught


async def test_inner_scope_cancel_does_not_affect_outer() -> None:
    with nursery_io.CancelScope() as outer:
        with nursery_io.CancelScope() as inner:
            inner.cancel()
            await nursery_io.sleep(0)
        await nursery_io.sleep(0)  # outer is fine
    assert inner.cancelled_caught
    assert not outer.cancel_called and not outer.cancelled_caught


# ----- shielding -----


async def test_shield_protects_from_outer_cancellation() -> None:
    with nursery_io.CancelScope() as outer:
        outer.cancel()
        with nursery_io.CancelScope(shield=True) as shielded:
            await nursery_io.sleep(0)
            assert nursery_io.current_effective_deadline() == math.inf
            # a scope inside the shield still works
            with nursery_io.CancelScope() as inner:
                inner.cancel()
                await nursery_io.sleep(0)
            assert inner.cancelled_caught
            shielded.shield = False
            with pytest.raises(nursery_io.Cancelled):
                await nursery_io.sleep(0)
            shielded.shield = True
            await nursery_io.sleep(0)
        await nursery_io.sleep(0)
    assert outer.cancelled_caught
    assert not shielded.cancel_called


async def test_raising_shield_wakes_nobody_and_lowering_it_delivers() -> None:
    outer = nursery_io.CancelScope()
    shield = nursery_io.CancelScope(shield=True)
    events = []

    async def child() -> None:
        with outer, shield:
            try:
                await nursery_io.sleep_forever()
            except nursery_io.Cancelled:
                events.append("child cancelled")
                raise

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        outer.cancel()
        await wait_all_tasks_blocked()
        assert events == []
        shield.shield = False
        await wait_all_tasks_blocked()
        assert events == ["child cancelled"]
    assert outer.cancelled_caught


async def test_shield_must_be_a_bool() -> None:
    scope = nursery_io.CancelScope()
    with pytest.raises(TypeError):
        scope.shield = 1  # type: ignore[assignment]
    assert nursery_io.CancelScope(shield=1).shield is True  # type: ignore[arg-type]


async def test_shielded_scope_inside_cancelled_nursery_finishes_cleanup() -> None:
    events = []

    async def child() -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            with nursery_io.CancelScope(shield=True):
                await nursery_io.sleep(0)
                events.append("cleanup done")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert events == ["cleanup done"]


# ----- deadlines -----


async def test_deadline_fires(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with nursery_io.CancelScope(deadline=start + 5) as scope:
        await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 5


async def test_deadline_moved_earlier_while_waiting(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    async with nursery_io.open_nursery() as nursery:
        with nursery_io.CancelScope(deadline=start + 100) as scope:

            async def mover() -> None:
                await wait_all_tasks_blocked()
                scope.deadline = start + 1

            nursery.start_soon(mover)
            await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 1


async def test_deadline_moved_later_while_waiting(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    async with nursery_io.open_nursery() as nursery:
        with nursery_io.CancelScope(deadline=start + 1) as scope:

            async def mover() -> None:
                await wait_all_tasks_blocked()
                scope.deadline = start + 50

            nursery.start_soon(mover)
            await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 50


async def test_deadline_removed_while_waiting(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with nursery_io.move_on_after(10) as outer:
        with nursery_io.CancelScope(deadline=start + 1) as scope:
            scope.deadline = math.inf
            await nursery_io.sleep_forever()
    assert outer.cancelled_caught and not scope.cancel_called
    assert nursery_io.current_time() == start + 10


async def test_deadline_in_the_past_cancels_at_next_checkpoint() -> None:
    with nursery_io.CancelScope() as scope:
        scope.deadline = nursery_io.current_time() - 1
        assert scope.cancel_called
        await lowlevel.checkpoint()
    assert scope.cancelled_caught
    with nursery_io.CancelScope(deadline=-math.inf) as scope2:
        assert scope2.cancel_called
        await lowlevel.checkpoint()
    assert scope2.cancelled_caught


async def test_deadline_validation() -> None:
    with pytest.raises(ValueError, match="NaN"):
        nursery_io.CancelScope(deadline=math.nan)
    scope = nursery_io.CancelScope()
    with pytest.raises(ValueError, match="NaN"):
        scope.deadline = math.nan
    assert scope.deadline == math.inf


async def test_cancel_called_reports_a_passed_deadline_before_the_loop_sees_it(
    autojump_clock: MockClock,
) -> None:
    clock = lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    with nursery_io.CancelScope(deadline=nursery_io.current_time() + 1) as scope:
        assert not scope.cancel_called
        clock.jump(2)
        assert scope.cancel_called
        await lowlevel.checkpoint()
    assert scope.cancelled_caught


async def test_many_deadlines_added_and_removed_stay_correct(autojump_clock: MockClock) -> None:
    # Enough churn to make the deadline heap prune its stale entries.
    start = nursery_io.current_time()
    for n in range(3000):
        with nursery_io.CancelScope(deadline=start + 1000 + n):
            pass
    for n in range(50):
        with nursery_io.CancelScope(deadline=start + 2000 + n) as scope:
            scope.deadline = start + 3000 + n
    assert lowlevel.current_statistics().seconds_to_next_deadline == math.inf
    with nursery_io.move_on_after(7) as scope:
        await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 7


# ----- current_effective_deadline and relative deadlines -----


async def test_current_effective_deadline(mock_clock: MockClock) -> None:
    assert nursery_io.current_effective_deadline() == math.inf
    with nursery_io.move_on_after(5):
        assert nursery_io.current_effective_deadline() == 5
        with nursery_io.move_on_after(10):
            assert nursery_io.current_effective_deadline() == 5
        with nursery_io.move_on_after(1):
            assert nursery_io.current_effective_deadline() == 1
        with nursery_io.CancelScope(shield=True):
            assert nursery_io.current_effective_deadline() == math.inf
            with nursery_io.move_on_after(20):
                assert nursery_io.current_effective_deadline() == 20
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            assert nursery_io.current_effective_deadline() == -math.inf
            with nursery_io.CancelScope(shield=True):
                assert nursery_io.current_effective_deadline() == math.inf

    async with nursery_io.open_nursery() as nursery:
        with nursery_io.move_on_after(3):

            async def child() -> None:
                # a child sees its nursery's deadlines, not where start_soon was called
                assert nursery_io.current_effective_deadline() == 4

            nursery.cancel_scope.deadline = 4
            nursery.start_soon(child)


async def test_relative_deadlines(mock_clock: MockClock) -> None:
    scope = nursery_io.CancelScope(relative_deadline=5)
    assert scope.relative_deadline == 5
    assert scope.is_relative is True
    with pytest.raises(RuntimeError, match="absolute deadline"):
        scope.deadline  # noqa: B018
    with pytest.raises(RuntimeError, match="absolute deadline"):
        scope.deadline = 3
    scope.relative_deadline = 4
    mock_clock.jump(3)
    with scope:
        # counted from entry, not from construction
        assert scope.deadline == 7
        assert scope.is_relative is None
        assert scope.relative_deadline == 4
        mock_clock.jump(1)
        assert scope.relative_deadline == 3
        scope.relative_deadline = 10
        assert scope.deadline == 14

    absolute = nursery_io.CancelScope(deadline=9)
    assert absolute.is_relative is False
    with pytest.raises(RuntimeError, match="relative deadline"):
        absolute.relative_deadline  # noqa: B018
    with pytest.raises(RuntimeError, match="relative deadline"):
        absolute.relative_deadline = 1
    assert nursery_io.CancelScope().is_relative is False

    with pytest.raises(ValueError):
        nursery_io.CancelScope(deadline=1, relative_deadline=1)
    with pytest.raises(ValueError):
        nursery_io.CancelScope(relative_deadline=-1)
    with pytest.raises(ValueError):
        nursery_io.CancelScope(relative_deadline=math.nan)
    with pytest.raises(ValueError):
        scope.relative_deadline = -1
    with pytest.raises(ValueError):
        scope.relative_deadline = math.nan


# ----- Cancelled -----


async def test_cancelled_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        nursery_io.Cancelled()


async def test_cancelled_explicit_source_reason_and_str() -> None:
    me = lowlevel.current_task()
    with nursery_io.CancelScope() as scope:
        scope.cancel(reason="shutting down")
        scope.cancel(reason="ignored: already cancelled")
        try:
            await nursery_io.sleep(0)
        except nursery_io.Cancelled as exc:
            assert exc.source == "explicit"
            assert exc.reason == "shutting down"
            assert exc.source_task == repr(me)
            assert (
                str(exc)
                == f"cancelled due to explicit with reason 'shutting down' from task {me!r}"
            )
            assert "source='explicit'" in repr(exc)
            raise


async def test_cancelled_deadline_source_has_no_task(autojump_clock: MockClock) -> None:
    with nursery_io.move_on_after(1):
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled as exc:
            assert (exc.source, exc.reason, exc.source_task) == ("deadline", None, None)
            assert str(exc) == "cancelled due to deadline"
            raise
    # entering a scope whose deadline already passed: still no task blamed
    with nursery_io.move_on_after(0):
        try:
            await nursery_io.sleep(0)
        except nursery_io.Cancelled as exc:
            assert exc.source_task is None
            raise


async def test_cancelled_nursery_source_names_the_failing_child() -> None:
    seen = []

    async def failing() -> None:
        await wait_all_tasks_blocked()
        raise ValueError

    async def victim() -> None:
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled as exc:
            seen.append(exc)
            raise

    with pytest.RaisesGroup(ValueError):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(victim)
            nursery.start_soon(failing, name="the-failing-child")
    (exc,) = seen
    assert exc.source == "nursery"
    assert exc.source_task is not None and "the-failing-child" in exc.source_task


async def test_cancelled_pickles_with_its_fields() -> None:
    with nursery_io.CancelScope() as scope:
        scope.cancel(reason="why")
        try:
            await nursery_io.sleep(0)
        except nursery_io.Cancelled as exc:
            copy = pickle.loads(pickle.dumps(exc))
            assert type(copy) is nursery_io.Cancelled
            assert (copy.source, copy.reason, copy.source_task) == (
                exc.source,
                exc.reason,
                exc.source_task,
            )
            raise


# ----- misnesting -----


async def test_misnested_scopes_are_detected() -> None:
    outer = nursery_io.CancelScope()
    inner = nursery_io.CancelScope()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="Cancel scope stack corrupted") as info:
        outer.__exit__(None, None, None)
    assert "reverse order" in str(info.value)
    # the inner scope was abandoned; exiting it is now quietly allowed
    inner.__exit__(None, None, None)
    await nursery_io.sleep(0)  # and the task is still usable


async def test_scope_exited_by_an_unrelated_task_is_detected() -> None:
    scope = nursery_io.CancelScope()
    errors = []
    entered = lowlevel.ParkingLot()

    async def owner() -> None:
        with scope:
            await entered.park()

    async def intruder() -> None:
        try:
            scope.__exit__(None, None, None)
        except RuntimeError as exc:
            errors.append(str(exc))
        entered.unpark()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(owner)
        await wait_all_tasks_blocked()
        nursery.start_soon(intruder)
    # reported to the intruder; the owner's scope was left alone and exits normally
    assert len(errors) == 1
    assert "from unrelated <Task" in errors[0]


def test_scope_exited_by_a_task_inside_it_is_reported_to_both() -> None:
    # A child (inside the scope, via its nursery) exits its parent's scope: the child gets
    # the error, and the parent's own exit later finds its scope gone (like Trio).
    errors = []

    async def main() -> None:
        scope = nursery_io.CancelScope()
        scope.__enter__()

        async def inner() -> None:
            try:
                scope.__exit__(None, None, None)
            except RuntimeError as exc:
                errors.append(str(exc))

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(inner)

    with pytest.raises(RuntimeError, match="Cancel scope stack corrupted"):
        nursery_io.run(main)
    assert len(errors) == 1 and "Cancel scope stack corrupted" in errors[0]


async def test_async_generator_yielding_inside_a_scope_is_detected() -> None:
    async def agen() -> Any:
        with nursery_io.CancelScope():
            yield 1

    gen = agen()
    await gen.__anext__()
    with pytest.raises(RuntimeError, match="async generator"):
        with nursery_io.CancelScope():
            await gen.__anext__()  # the generator leaves its scope inside ours
    await gen.aclose()
    await nursery_io.sleep(0)


async def test_exit_of_unentered_scope_is_an_error() -> None:
    # Trio's wording, which doesn't tell "never entered" from "already exited".
    with pytest.raises(RuntimeError, match="which had already been exited"):
        nursery_io.CancelScope().__exit__(None, None, None)


async def test_exit_twice_is_an_error() -> None:
    scope = nursery_io.CancelScope()
    with scope:
        pass
    with pytest.raises(RuntimeError, match="already been exited"):
        scope.__exit__(None, None, None)


async def test_deeply_nested_scopes(mock_clock: MockClock) -> None:
    # Scopes nested by recursion almost as deep as the recursion limit lets the user's own
    # code go: the runtime's walks over the scope tree must not need that many frames again.
    depth = sys.getrecursionlimit() - 150
    scopes: list[nursery_io.CancelScope] = []

    async def nest(level: int) -> None:
        with nursery_io.CancelScope() as scope:
            scopes.append(scope)
            if level:
                await nest(level - 1)
                return
            scopes[depth // 2].deadline = 5
            assert nursery_io.current_effective_deadline() == 5
            scopes[0].cancel()
            assert nursery_io.current_effective_deadline() == -math.inf
            await lowlevel.checkpoint()

    await nest(depth)
    assert scopes[0].cancelled_caught
    assert not any(scope.cancelled_caught for scope in scopes[1:])
