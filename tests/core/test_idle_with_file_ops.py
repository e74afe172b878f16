"""A run waiting for its own disk operations is not idle.

Autojumping a MockClock (or waking wait_all_tasks_blocked) while a file op is in flight
would fire deadlines that a real clock never would.
"""

from __future__ import annotations

from pathlib import Path

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import MockClock, wait_all_tasks_blocked


async def test_autojump_waits_for_file_ops(autojump_clock: MockClock, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_bytes(b"x" * 100_000)
    start = nursery_io.current_time()
    with nursery_io.fail_after(60):
        for _ in range(300):
            assert len(await nursery_io.Path(target).read_bytes()) == 100_000
    # No virtual time passed: nothing in this test sleeps.
    assert nursery_io.current_time() == start


async def test_wait_all_tasks_blocked_waits_for_pool_only_ops(tmp_path: Path) -> None:
    # A pool-only op (listdir) runs in a worker thread; the run must not count as idle
    # until it is done.
    (tmp_path / "a").write_text("a")
    results: list[list[str]] = []

    async def lister() -> None:
        results.append(await lowlevel.run_op(lowlevel.ops.pool_only(_slow_listdir, str(tmp_path))))

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(lister)
        await wait_all_tasks_blocked()
        assert results == [["a"]]


def _slow_listdir(path: str) -> list[str]:
    import os
    import time

    time.sleep(0.05)
    return sorted(os.listdir(path))
