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
