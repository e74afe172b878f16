"""sniffio sees nursery_io inside a run, per thread, and nothing outside."""

from __future__ import annotations

import threading

import pytest
import sniffio
import trio

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import wait_all_tasks_blocked


async def test_current_async_library_inside_a_run() -> None:
    seen: dict[str, str] = {}

    def callback() -> None:
        seen["run_sync_soon callback"] = sniffio.current_async_library()

    async def system() -> None:
        seen["system task"] = sniffio.current_async_library()

    async def child() -> None:
        seen["child task"] = sniffio.current_async_library()

    seen["main task"] = sniffio.current_async_library()
    lowlevel.current_token().run_sync_soon(callback)
    lowlevel.spawn_system_task(system)
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(child)
    await wait_all_tasks_blocked()
    assert seen == dict.fromkeys(
        ("main task", "child task", "system task", "run_sync_soon callback"), "nursery_io"
    )


def test_outside_a_run_nothing_is_detected() -> None:
    async def main() -> None:
        pass

    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()
    nursery_io.run(main)
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


def test_previous_value_is_restored_after_the_run() -> None:
    async def main() -> str:
        return sniffio.current_async_library()

    sniffio.thread_local.name = "outer-library"
    try:
        assert nursery_io.run(main) == "nursery_io"
        assert sniffio.thread_local.name == "outer-library"
    finally:
        sniffio.thread_local.name = None

    async def fails() -> None:
        raise ValueError

    with pytest.raises(ValueError):
        nursery_io.run(fails)
    assert sniffio.thread_local.name is None


def test_each_thread_sees_its_own_library() -> None:
    # A nursery_io run and a trio run side by side in two threads, each checking the
    # answer while the other run is live.
    both_running = threading.Barrier(2, timeout=30)
    results: dict[str, object] = {}

    async def check_nursery_io() -> str:
        both_running.wait()
        await nursery_io.sleep(0)
        return sniffio.current_async_library()

    async def check_trio() -> str:
        both_running.wait()
        await trio.sleep(0)
        return sniffio.current_async_library()

    def in_thread(name: str, run: object, fn: object) -> None:
        try:
            results[name] = run(fn)  # type: ignore[operator]
        except BaseException as exc:  # reported by the assertion below
            results[name] = exc

    threads = [
        threading.Thread(target=in_thread, args=("nursery_io", nursery_io.run, check_nursery_io)),
        threading.Thread(target=in_thread, args=("trio", trio.run, check_trio)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {"nursery_io": "nursery_io", "trio": "trio"}


def test_worker_threads_do_not_inherit_the_run() -> None:
    seen: list[object] = []

    async def main() -> None:
        done = lowlevel.ParkingLot()
        token = lowlevel.current_token()

        def work() -> None:
            try:
                seen.append(sniffio.current_async_library())
            except sniffio.AsyncLibraryNotFoundError as exc:
                seen.append(type(exc))
            token.run_sync_soon(done.unpark_all)

        thread = threading.Thread(target=work)
        thread.start()
        await done.park()
        thread.join()

    nursery_io.run(main)
    assert seen == [sniffio.AsyncLibraryNotFoundError]
