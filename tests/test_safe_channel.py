"""as_safe_channel: the same scenarios under trio.run and nursery_io.run give the same trace."""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
import trio

import nursery_io

Scenario = Callable[[types.ModuleType, list[str]], Awaitable[None]]


def _generator(lib: types.ModuleType, log: list[str]) -> Callable[..., object]:
    @lib.as_safe_channel
    async def numbers(count: int, fail_at: int | None = None) -> AsyncGenerator[int, None]:
        try:
            for i in range(count):
                log.append(f"gen computes {i}")
                await lib.sleep(0)
                if i == fail_at:
                    raise ValueError("generator failed")
                yield i
                log.append(f"gen resumed after {i}")
        finally:
            log.append("gen finally")

    return numbers


async def consume_all(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(3) as channel:  # type: ignore[attr-defined]
        async for value in channel:
            log.append(f"got {value}")


async def break_early(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(5) as channel:  # type: ignore[attr-defined]
        async for value in channel:
            log.append(f"got {value}")
            if value == 1:
                break
        log.append("after the loop, still in the block")


async def generator_raises(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(5, fail_at=2) as channel:  # type: ignore[attr-defined]
        async for value in channel:
            log.append(f"got {value}")


async def body_raises(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(5) as channel:  # type: ignore[attr-defined]
        async for value in channel:
            log.append(f"got {value}")
            raise KeyError("body failed")


async def never_receives(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(5):  # type: ignore[attr-defined]
        log.append("body without a receive")


async def cancelled_from_outside(lib: types.ModuleType, log: list[str]) -> None:
    with lib.move_on_after(0.05) as scope:
        async with _generator(lib, log)(5) as channel:  # type: ignore[attr-defined]
            async for value in channel:
                log.append(f"got {value}")
                await lib.sleep(10)
    log.append(f"cancelled_caught={scope.cancelled_caught}")


async def receive_after_the_block(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(2) as channel:  # type: ignore[attr-defined]
        log.append(f"got {await channel.receive()}")
    try:
        await channel.receive()
    except lib.ClosedResourceError:
        log.append("ClosedResourceError after the block")


async def end_of_channel(lib: types.ModuleType, log: list[str]) -> None:
    async with _generator(lib, log)(1) as channel:  # type: ignore[attr-defined]
        log.append(f"got {await channel.receive()}")
        try:
            await channel.receive()
        except lib.EndOfChannel:
            log.append("EndOfChannel")


SCENARIOS = [
    consume_all,
    break_early,
    generator_raises,
    body_raises,
    never_receives,
    cancelled_from_outside,
    receive_after_the_block,
    end_of_channel,
]


def _trace(lib: types.ModuleType, scenario: Scenario) -> list[str]:
    log: list[str] = []

    async def main() -> None:
        try:
            await scenario(lib, log)
            log.append("returned")
        except BaseException as exc:  # noqa: BLE001 - the trace records what came out
            log.append(f"raised {type(exc).__name__}: {exc}")

    lib.run(main)
    return log


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_same_trace_as_trio(scenario: Scenario) -> None:
    ours = _trace(nursery_io, scenario)
    assert ours == _trace(trio, scenario)
    assert ours[-1] in ("returned",) or ours[-1].startswith("raised ")


def test_expected_traces() -> None:
    # Spelled out once, so that a change in both libraries doesn't go unnoticed.
    assert _trace(nursery_io, break_early) == [
        "gen computes 0",
        "got 0",
        "gen resumed after 0",
        "gen computes 1",
        "got 1",
        "after the loop, still in the block",
        "gen finally",
        "returned",
    ]
    assert _trace(nursery_io, generator_raises)[-2:] == [
        "gen finally",
        "raised ValueError: generator failed",
    ]
    assert _trace(nursery_io, never_receives) == ["body without a receive", "returned"]


async def test_no_exception_groups_and_no_leftover_tasks() -> None:
    @nursery_io.as_safe_channel
    async def failing() -> AsyncGenerator[int, None]:
        yield 1
        raise OSError("disk on fire")

    before = len(nursery_io.lowlevel.current_root_task().child_nurseries)
    with pytest.raises(OSError, match="disk on fire"):
        async with failing() as channel:
            async for _ in channel:
                pass
    assert len(nursery_io.lowlevel.current_root_task().child_nurseries) == before


async def test_the_manager_is_single_use() -> None:
    @nursery_io.as_safe_channel
    async def one() -> AsyncGenerator[int, None]:
        yield 1

    manager = one()
    async with manager as channel:
        assert await channel.receive() == 1
    with pytest.raises(RuntimeError, match="already entered"):
        async with manager:
            pass


# ----- How errors come out of the block: the same shape (groups, notes, context) as trio. -----


def _shape(exc: BaseException) -> object:
    if isinstance(exc, BaseExceptionGroup):
        notes = getattr(exc, "__notes__", [])
        return (type(exc).__name__, notes, [_shape(inner) for inner in exc.exceptions])
    return (type(exc).__name__, str(exc))


def _outcome(
    lib: types.ModuleType, scenario: Callable[[types.ModuleType], Awaitable[object]]
) -> object:
    async def main() -> object:
        try:
            return ("returned", await scenario(lib))
        except BaseException as exc:  # noqa: BLE001 - the shape of what came out is compared
            return ("raised", _shape(exc))

    return lib.run(main)


async def body_and_generator_cleanup_fail(lib: types.ModuleType) -> object:
    events: list[str] = []

    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
        except BaseException as exc:
            events.append(repr(exc))
            raise
        finally:
            events.append("finally")
            raise ValueError("cleanup failed")

    try:
        async with agen() as channel:
            async for _ in channel:
                raise TypeError("body failed")
    finally:
        events.append("after")
        assert events == ["GeneratorExit()", "finally", "after"], events
    return None


async def nursery_in_generator_raises_on_close(lib: types.ModuleType) -> object:
    async def raise_when_cancelled() -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            raise ValueError("child") from None

    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[None, None]:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raise_when_cancelled)
            yield

    async with agen() as channel:
        async for _ in channel:
            break
    return None


def _generator_exit_raisers(lib: types.ModuleType, extra: type[BaseException]) -> object:
    async def raise_when_cancelled(exc_type: type[BaseException]) -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            raise exc_type from None

    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[None, None]:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raise_when_cancelled, extra)
            nursery.start_soon(raise_when_cancelled, GeneratorExit)
            yield

    return agen


async def extra_generator_exits(lib: types.ModuleType) -> object:
    async with _generator_exit_raisers(lib, GeneratorExit)() as channel:  # type: ignore[operator]
        async for _ in channel:
            break
    return None


async def extra_generator_exit_and_error(lib: types.ModuleType) -> object:
    async with _generator_exit_raisers(lib, ValueError)() as channel:  # type: ignore[operator]
        async for _ in channel:
            break
    return None


async def generator_closes_the_channel(lib: types.ModuleType) -> object:
    log: list[str] = []

    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[None, None]:
        yield
        await channel.aclose()
        while True:
            yield

    async with agen() as channel:
        try:
            async for _ in channel:
                pass
        except lib.ClosedResourceError:
            log.append("ClosedResourceError")
    return log


async def closed_by_another_task(lib: types.ModuleType) -> object:
    log: list[str] = []

    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[int, None]:
        i = 0
        while True:
            yield i
            i += 1

    async with agen() as channel, lib.open_nursery() as nursery:

        async def close_soon() -> None:
            await lib.lowlevel.checkpoint()
            await channel.aclose()

        nursery.start_soon(close_soon)
        try:
            async for _ in channel:
                pass
        except lib.ClosedResourceError:
            log.append("ClosedResourceError")
    return log


async def user_group_is_not_unwrapped(lib: types.ModuleType) -> object:
    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[None, None]:
        yield

    async with agen():
        raise ExceptionGroup("mine", [KeyError("inner")])


async def generator_error_keeps_its_context(lib: types.ModuleType) -> object:
    @lib.as_safe_channel
    async def agen() -> AsyncGenerator[None, None]:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second") from None
        yield

    try:
        async with agen() as channel:
            await channel.receive()
    except ValueError as exc:
        return (repr(exc.__context__), exc.__suppress_context__)
    return None


ERROR_SCENARIOS = [
    body_and_generator_cleanup_fail,
    nursery_in_generator_raises_on_close,
    extra_generator_exits,
    extra_generator_exit_and_error,
    generator_closes_the_channel,
    closed_by_another_task,
    user_group_is_not_unwrapped,
    generator_error_keeps_its_context,
]


@pytest.mark.parametrize("scenario", ERROR_SCENARIOS, ids=lambda s: s.__name__)
def test_errors_come_out_as_in_trio(
    scenario: Callable[[types.ModuleType], Awaitable[object]],
) -> None:
    assert _outcome(nursery_io, scenario) == _outcome(trio, scenario)


def test_expected_error_shapes() -> None:
    note = (
        "Encountered exception during cleanup of generator object, as "
        "well as exception in the contextmanager body - unable to unwrap."
    )
    assert _outcome(nursery_io, body_and_generator_cleanup_fail) == (
        "raised",
        (
            "ExceptionGroup",
            [note],
            [("TypeError", "body failed"), ("ValueError", "cleanup failed")],
        ),
    )
    assert _outcome(nursery_io, nursery_in_generator_raises_on_close) == (
        "raised",
        ("ExceptionGroup", [], [("ValueError", "child")]),
    )
    more_than_one = ("AssertionError", "More than one GeneratorExit found.")
    assert _outcome(nursery_io, extra_generator_exits) == (
        "raised",
        ("ExceptionGroup", [], [more_than_one]),
    )
    assert _outcome(nursery_io, generator_closes_the_channel) == (
        "returned",
        ["ClosedResourceError"],
    )
