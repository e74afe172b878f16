"""assert_checkpoints / assert_no_checkpoints."""

from __future__ import annotations

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import assert_checkpoints, assert_no_checkpoints


async def test_full_checkpoints_satisfy_assert_checkpoints() -> None:
    with assert_checkpoints():
        await lowlevel.checkpoint()
    with assert_checkpoints():
        await nursery_io.sleep(0)
    with assert_checkpoints():
        # A real park in wait_task_rescheduled is a checkpoint too.
        with nursery_io.move_on_after(0):
            await nursery_io.sleep_forever()


async def test_assert_checkpoints_fails_without_a_full_checkpoint() -> None:
    with pytest.raises(AssertionError, match="missing a cancel point and a schedule point"):
        with assert_checkpoints():
            pass
    with pytest.raises(AssertionError, match=r"missing a cancel point\)"):
        with assert_checkpoints():
            await lowlevel.cancel_shielded_checkpoint()
    with pytest.raises(AssertionError, match=r"missing a schedule point\)"):
        with assert_checkpoints():
            await lowlevel.checkpoint_if_cancelled()


async def test_assert_no_checkpoints() -> None:
    with assert_no_checkpoints():
        x = sum(range(10))
    assert x == 45
    for partial_checkpoint in (
        lowlevel.checkpoint,
        lowlevel.cancel_shielded_checkpoint,
        lowlevel.checkpoint_if_cancelled,
    ):
        with pytest.raises(AssertionError, match="executed a checkpoint"):
            with assert_no_checkpoints():
                await partial_checkpoint()


async def test_exceptions_pass_through_unchecked() -> None:
    with pytest.raises(KeyError):
        with assert_checkpoints():
            raise KeyError("no checkpoint, but the error wins")
    with pytest.raises(KeyError):
        with assert_no_checkpoints():
            await lowlevel.checkpoint()
            raise KeyError("checkpoint, but the error wins")


async def test_counts_only_the_current_task(nursery: nursery_io.Nursery) -> None:
    async def busy() -> None:
        for _ in range(3):
            await lowlevel.checkpoint()

    nursery.start_soon(busy)
    with assert_no_checkpoints():
        # Other tasks checkpointing elsewhere don't count against us.
        for _ in range(1000):
            pass
    with assert_checkpoints():
        await nursery_io.testing.wait_all_tasks_blocked()


def test_outside_a_run_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        with assert_checkpoints():
            pass
