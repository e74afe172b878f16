"""The showcase head to head: ``python -m benchmarks.showcase``.

It answers the question behind this project, "why do event loops hand file I/O to a thread
pool, and what happens if they don't?", on the machine it runs on. It runs the demo of
``python -m nursery_io`` (what the kernel layer found, many tasks reading files and echoing
over TCP at once, and the run's statistics), then:

1. the same work on a thread-pool design (asyncio with file reads in its default executor,
   which is what aiofiles and most runtimes do), for comparison;
2. the same file reads and writes in a plain synchronous loop on one thread: the floor no
   event loop can beat for that part of the work;
3. a verdict that counts the process's own threads and the kernel's io_uring workers
   separately.

Every line fits in 80 columns, and the report is printed before the demo's temporary files
are removed (which can take a while on a slow disk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

from nursery_io._showcase import (
    BLOCK,
    MESSAGE,
    WRITE_EVERY,
    Lines,
    Outcome,
    Progress,
    ThreadPeak,
    Workload,
    plural,
    report_statistics,
    showcase,
    verdict_of,
)

# ----- the same work on asyncio with a thread pool for files -----


async def _asyncio_demo(work: Workload, progress: Progress) -> Outcome:
    rng = random.Random(work.seed)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()

    async def reader(index: int) -> None:
        path = work.files[index % len(work.files)]
        scratch = os.path.join(work.directory, f"scratch-{index}.bin")
        fd = await loop.run_in_executor(None, os.open, path, os.O_RDONLY)
        out = await loop.run_in_executor(
            None, os.open, scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        )
        try:
            for number in range(work.reads_per_reader):
                offset = rng.randrange(0, work.file_size - BLOCK)
                data = await loop.run_in_executor(None, os.pread, fd, BLOCK, offset)
                assert len(data) == BLOCK
                if number % WRITE_EVERY == 0:
                    await loop.run_in_executor(None, os.pwrite, out, data, number * BLOCK)
                progress.advance()
        finally:
            await loop.run_in_executor(None, os.close, fd)
            await loop.run_in_executor(None, os.close, out)

    async def echo(reader_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader_.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def client(port: int) -> None:
        reader_, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(work.round_trips):
            writer.write(MESSAGE)
            await writer.drain()
            await reader_.readexactly(len(MESSAGE))
            progress.advance()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, asyncio.TaskGroup() as group:
        for index in range(work.readers):
            group.create_task(reader(index))
        for _ in range(work.clients):
            group.create_task(client(port))
    seconds = time.perf_counter() - started
    return Outcome("asyncio + thread pool", seconds, work.total_reads, work.total_round_trips, 0)


# ----- the floor: the file part of the work, synchronously, on one thread -----


def _synchronous_floor(work: Workload) -> float:
    """Seconds for the demo's file reads and writes as a plain ``os.pread``/``os.pwrite``
    loop: no event loop, no threads, no concurrency. Any runtime adds to this."""
    rng = random.Random(work.seed)
    started = time.perf_counter()
    for index in range(work.readers):
        path = work.files[index % len(work.files)]
        scratch = os.path.join(work.directory, f"floor-{index}.bin")
        fd = os.open(path, os.O_RDONLY)
        out = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for number in range(work.reads_per_reader):
                data = os.pread(fd, BLOCK, rng.randrange(0, work.file_size - BLOCK))
                if number % WRITE_EVERY == 0:
                    os.pwrite(out, data, number * BLOCK)
        finally:
            os.close(fd)
            os.close(out)
    return time.perf_counter() - started


# ----- report -----


def verdict(ours: Outcome, theirs: Outcome | None, floor: float | None) -> str:
    parts = [verdict_of(ours)]
    if theirs is not None and ours.seconds > 0 and theirs.seconds > 0:
        ratio = theirs.seconds / ours.seconds
        comparison = f"{ratio:.1f}x as fast" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        parts.append(
            f"thread pool: {theirs.seconds:.2f} s on "
            f"{plural(theirs.peak_threads, 'thread')} (nursery_io {comparison})"
        )
    if floor is not None:
        parts.append(
            f"synchronous floor (the file reads and writes alone, one thread, no event "
            f"loop): {floor:.2f} s"
        )
    return "=> " + "; ".join(parts) + "."


def report(ours: Outcome, theirs: Outcome | None, floor: float | None, line: Lines) -> None:
    report_statistics(ours, line)
    if theirs is not None:
        line()
        line(f"{theirs.name} (the thread-pool design)")
        line(f"time: {theirs.seconds:.2f} s, peak OS threads: {theirs.peak_threads}", 2)
    if floor is not None:
        line()
        line("the floor: the same file reads and writes, synchronously")
        line(
            f"time: {floor:.2f} s (os.pread/os.pwrite in a loop, one thread; the TCP part "
            f"has no such floor)",
            2,
        )
    line()
    line(verdict(ours, theirs, floor), 2, hang=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.showcase",
        description="nursery_io's demo against a thread-pool design and a synchronous floor.",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller demo (a second or two)")
    parser.add_argument("--no-compare", action="store_true", help="skip the thread-pool run")
    args = parser.parse_args(argv)

    def compare(work: Workload, ours: Outcome, line: Lines) -> None:
        theirs = None
        if not args.no_compare:
            total = work.total_reads + work.total_round_trips
            progress = Progress("asyncio + thread pool", total)
            # Our idle worker threads linger for a few seconds; they aren't asyncio's.
            with ThreadPeak(exclude_prefix="nursery_io") as peak:
                theirs = asyncio.run(_asyncio_demo(work, progress))
            theirs.peak_threads = peak.peak
        report(ours, theirs, _synchronous_floor(work), line)

    showcase(args.quick, compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
