"""nursery_io.testing.Sequencer."""

from __future__ import annotations

import pytest

import nursery_io
from nursery_io.testing import Sequencer, wait_all_tasks_blocked


async def test_blocks_run_in_sequence_order_across_tasks() -> None:
    seq = Sequencer()
    log: list[str] = []

    async def worker_a() -> None:
        async with seq(0):
            log.append("a0")
        async with seq(3):
            log.append("a3")
        async with seq(4):
            log.append("a4")

    async def worker_b() -> None:
        async with seq(2):
            log.append("b2")
        async with seq(5):
            log.append("b5")

    async def worker_c() -> None:
        async with seq(1):
            # Even if this block sleeps, block 2 waits for it to exit.
            await nursery_io.sleep(0)
            await nursery_io.sleep(0)
            log.append("c1")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(worker_b)
        nursery.start_soon(worker_c)
        nursery.start_soon(worker_a)
    assert log == ["a0", "c1", "b2", "a3", "a4", "b5"]


async def test_a_failing_block_still_releases_the_next() -> None:
    seq = Sequencer()
    log: list[int] = []

    async def fail_first() -> None:
        with pytest.raises(ValueError):
            async with seq(0):
                raise ValueError

    async def then() -> None:
        async with seq(1):
            log.append(1)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(then)
        nursery.start_soon(fail_first)
    assert log == [1]


async def test_reusing_a_position_is_an_error() -> None:
    seq = Sequencer()
    async with seq(0):
        pass
    with pytest.raises(RuntimeError, match="already used"):
        async with seq(0):
            pass


async def test_cancelled_wait_breaks_the_sequencer() -> None:
    seq = Sequencer()
    outcomes: dict[int, str] = {}

    async def waiter(position: int, scope: nursery_io.CancelScope) -> None:
        with scope:
            try:
                async with seq(position):
                    outcomes[position] = "ran"
            except RuntimeError as exc:
                outcomes[position] = str(exc)

    scopes = {1: nursery_io.CancelScope(), 2: nursery_io.CancelScope()}
    async with nursery_io.open_nursery() as nursery:
        for position, scope in scopes.items():
            nursery.start_soon(waiter, position, scope)
        await wait_all_tasks_blocked()
        scopes[1].cancel()
    assert "cancelled while waiting for Sequencer position 1" in outcomes[1]
    assert "broken" in outcomes[2]
    with pytest.raises(RuntimeError, match="broken"):
        async with seq(0):
            pass


async def test_waiting_is_a_checkpoint_once_released() -> None:
    seq = Sequencer()
    async with seq(0):
        pass
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(RuntimeError, match="cancelled while waiting"):
            async with seq(1):
                pass
