"""Two runs in two threads doing file I/O at once: one ring (and one engine) per run."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import nursery_io
from nursery_io._core._context import current_runner


def test_two_runs_in_two_threads_each_have_their_own_engine(tmp_path: Path) -> None:
    data = {name: os.urandom(256 * 1024) for name in ("a", "b")}
    for name, payload in data.items():
        (tmp_path / name).write_bytes(payload)
    both_started = threading.Barrier(2, timeout=30)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def thread_main(name: str) -> None:
        async def main() -> tuple[int | None, bool]:
            path = tmp_path / name
            copy = tmp_path / f"{name}.copy"
            async with await nursery_io.open_file(path, "rb") as source:
                first = await source.read(1024)
                ring_fd = current_runner().kernel.engine.ring_fd
                # Both runs are live, engines set up, before either goes on: two live rings
                # are two open fds, so their numbers must differ.
                await nursery_io.to_thread.run_sync(both_started.wait)
                rest = await source.read()
            async with await nursery_io.open_file(copy, "wb") as out:
                await out.write(first + rest)
            copied = await nursery_io.Path(copy).read_bytes()
            return ring_fd, copied == data[name]

        try:
            results[name] = nursery_io.run(main)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert results["a"][1] and results["b"][1]
    if results["a"][0] is not None:
        # Distinct engines (hence distinct rings) for the two runs.
        assert results["a"][0] != results["b"][0]
