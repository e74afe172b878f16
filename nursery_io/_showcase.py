"""The capability report behind ``python -m nursery_io``.

It shows, on the machine it runs on, what nursery_io's kernel layer does:

1. what the kernel layer found: io_uring and the operations it supports here (or why it fell
   back to threads), and epoll for sockets;
2. a short live demo: many tasks reading files and echoing over TCP at the same time;
3. the run's statistics: ops by engine, worker threads used, loop turns, and the
   ``io_uring_enter`` calls saved by batching, counting the process's own threads and the
   kernel's io_uring workers separately.

The same demo against a thread-pool design and a synchronous floor is a benchmark:
``python -m benchmarks.showcase`` (benchmarks/showcase.py), which builds on this module.

Every line of the report fits in 80 columns, and the report is printed before the demo's
temporary files are removed (which can take a while on a slow disk).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nursery_io
from nursery_io._core import current_statistics
from nursery_io._kernel import workers

__all__ = ["main"]

BLOCK = 4096
# Every task also writes one block out of every WRITE_EVERY it reads (writes always go to an
# engine: there is no "only if it won't block" write for buffered files).
WRITE_EVERY = 4
MESSAGE = b"x" * 512
WIDTH = 80  # every line of the report fits a standard terminal


@dataclass
class Workload:
    directory: str
    files: list[str]
    file_size: int
    readers: int
    reads_per_reader: int
    clients: int
    round_trips: int
    seed: int = 1234

    @property
    def total_reads(self) -> int:
        return self.readers * self.reads_per_reader

    @property
    def total_round_trips(self) -> int:
        return self.clients * self.round_trips


@dataclass
class Outcome:
    name: str
    seconds: float
    reads: int
    round_trips: int
    peak_threads: int
    details: dict[str, Any] = field(default_factory=dict)


def _make_files(directory: str, count: int, size: int) -> list[str]:
    paths = []
    chunk = os.urandom(size)
    for index in range(count):
        path = os.path.join(directory, f"data-{index:03d}.bin")
        with open(path, "wb") as file:
            file.write(chunk)
        paths.append(path)
    # Read everything once so the demo measures the runtimes, not the disk.
    for path in paths:
        with open(path, "rb") as file:
            file.read()
    return paths


class ThreadPeak:
    """Samples the process's thread count while a demo runs (the honest figure: OS threads)."""

    def __init__(self, exclude_prefix: str | None = None) -> None:
        self.peak = 0
        self.peak_kernel_workers = 0
        self._exclude = exclude_prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _count(self) -> tuple[int, int]:
        threads = kernel_workers = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as comm:
                    name = comm.read()
            except OSError:
                continue  # the thread exited meanwhile
            if name.startswith("iou-"):
                # io_uring's own kernel workers (they run ops the kernel can't finish
                # inline, like opens that create files). Not threads of ours.
                kernel_workers += 1
            elif self._exclude is None or not name.startswith(self._exclude):
                threads += 1
        return threads, kernel_workers

    def _sample(self) -> None:
        while not self._stop.is_set():
            threads, kernel_workers = self._count()
            # Minus one: this sampling thread itself.
            self.peak = max(self.peak, threads - 1)
            self.peak_kernel_workers = max(self.peak_kernel_workers, kernel_workers)
            self._stop.wait(0.002)

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Progress:
    """A one-line progress display on a terminal; periodic plain lines otherwise."""

    def __init__(self, label: str, total: int, stream: Any = sys.stderr) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last_print = 0.0

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self._last_print >= (0.05 if self.tty else 1.0) or self.done >= self.total:
            self._last_print = now
            self.draw()

    def draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        # 2 + 34 + 2 + 30 + 5 = 73 columns: inside WIDTH.
        text = f"  {self.label:<34} [{bar}] {100 * self.done // max(1, self.total):3d}%"
        if self.tty:
            self.stream.write("\r" + text)
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# ----- the demo on nursery_io -----


async def _nursery_io_demo(work: Workload, progress: Progress) -> Outcome:
    rng = random.Random(work.seed)
    started = time.perf_counter()

    async def reader(index: int) -> None:
        path = work.files[index % len(work.files)]
        scratch = os.path.join(work.directory, f"scratch-{index}.bin")
        async with (
            await nursery_io.open_file(path, "rb", buffering=0) as file,
            await nursery_io.open_file(scratch, "wb", buffering=0) as out,
        ):
            for number in range(work.reads_per_reader):
                offset = rng.randrange(0, work.file_size - BLOCK)
                data = await file.pread(BLOCK, offset)
                assert len(data) == BLOCK
                if number % WRITE_EVERY == 0:
                    await out.pwrite(data, number * BLOCK)
                progress.advance()

    async def echo(stream: nursery_io.SocketStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    async def client(port: int) -> None:
        async with await nursery_io.open_tcp_stream("127.0.0.1", port) as stream:
            for _ in range(work.round_trips):
                await stream.send_all(MESSAGE)
                received = 0
                while received < len(MESSAGE):
                    received += len(await stream.receive_some(65536))
                progress.advance()

    async with nursery_io.open_nursery() as server_nursery:
        listeners = await server_nursery.start(
            functools.partial(nursery_io.serve_tcp, echo, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with nursery_io.open_nursery() as nursery:
            for index in range(work.readers):
                nursery.start_soon(reader, index)
            for _ in range(work.clients):
                nursery.start_soon(client, port)
        server_nursery.cancel_scope.cancel()
    seconds = time.perf_counter() - started
    statistics = current_statistics()
    return Outcome(
        "nursery_io",
        seconds,
        work.total_reads,
        work.total_round_trips,
        0,
        {
            "io": statistics.io_statistics,
            "polls": statistics.kernel_polls,
            "steps": statistics.task_steps,
        },
    )


# ----- report -----


class Lines:
    """Writes report lines wrapped to WIDTH columns (continuations indented a bit more)."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def __call__(self, text: str = "", indent: int = 0, hang: int = 2) -> None:
        if not text:
            print(file=self.out)
            return
        for line in textwrap.wrap(
            text,
            width=WIDTH,
            initial_indent=" " * indent,
            subsequent_indent=" " * (indent + hang),
            break_on_hyphens=False,
        ):
            print(line, file=self.out)


def _describe_kernel() -> list[tuple[int, str]]:
    """(indent, text) lines on what the kernel layer found."""
    from nursery_io._kernel.engine import FileEngine

    lines = [(2, "sockets, pipes, signals: epoll (readiness)")]
    engine = FileEngine(lambda callback: callback())
    try:
        stats = engine.statistics()
    finally:
        engine.close()
    if stats.engine == "io_uring":
        ops = ", ".join(stats.supported_opcodes)
        lines.append(
            (2, f"files and disk ops: io_uring (completion), {stats.ring_entries} entries")
        )
        lines.append((4, f"ops on the ring here: {ops}"))
        lines.append((4, "everything else (listdir, chmod, getaddrinfo, ...): worker threads"))
    else:
        lines.append((2, "files and disk ops: worker threads"))
        lines.append((4, f"why not io_uring: {stats.fallback_reason}"))
    return lines


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _threads_phrase(own: int, kernel_workers: int) -> str:
    """Threads of the process itself, and the kernel's io_uring workers apart: those are
    the kernel's (io-wq), created for ops it can't finish inline, not a thread pool of ours."""
    text = plural(own, "thread")
    if kernel_workers:
        text += f" (+{kernel_workers} kernel io-wq)"
    return text


def verdict_of(ours: Outcome) -> str:
    """The demo's result in a phrase: its time and the threads it used."""
    kernel_workers = ours.details.get("kernel_workers", 0)
    return (
        f"nursery_io: {ours.seconds:.2f} s on {_threads_phrase(ours.peak_threads, kernel_workers)}"
    )


def report_statistics(ours: Outcome, line: Lines) -> None:
    """The statistics of the demo's run."""
    io = ours.details["io"]
    engine = io.file_engine
    line()
    line("nursery_io run statistics")
    line(
        f"time: {ours.seconds:.2f} s for {ours.reads:,} file reads and "
        f"{ours.round_trips:,} TCP round trips",
        2,
    )
    if engine is not None:
        by_engine = ", ".join(f"{name}: {count:,}" for name, count in engine.ops_by_engine.items())
        line(f"file ops by engine: {by_engine or 'none'}", 2)
        if engine.fallback_reason:
            line(f"fell back to threads because: {engine.fallback_reason}", 2)
        for reason, count in engine.fallbacks_by_reason.items():
            line(f"ops sent to threads ({reason}): {count:,}", 2)
        line(f"peak worker threads for file ops: {engine.peak_worker_threads}", 2)
        inline = engine.ops_by_engine.get("inline", 0)
        if inline:
            line(f"served inline from the page/dentry cache (no ring, no thread): {inline:,}", 2)
        line(
            f"io_uring_enter calls: {engine.submit_syscalls:,} for "
            f"{engine.ops_submitted:,} submitted ops (batching saved "
            f"{engine.syscalls_saved:,} syscalls)",
            2,
        )
    line(
        f"loop turns that polled the kernel: {ours.details['polls']:,}; "
        f"task steps: {ours.details['steps']:,}",
        2,
    )
    line(f"peak threads of the process: {ours.peak_threads}", 2)
    if ours.details.get("kernel_workers"):
        line(
            f"peak io_uring kernel workers (io-wq: the kernel's own, for ops it can't "
            f"finish inline; not counted above): {ours.details['kernel_workers']}",
            2,
        )


def print_header(line: Lines) -> None:
    """The versions, then what the kernel layer found."""
    line(
        f"nursery_io {nursery_io.__version__} — Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} ({platform.machine()})"
    )
    for indent, text in _describe_kernel():
        line(text, indent)


def make_workload(directory: str, quick: bool) -> Workload:
    """The demo's work, with its files created in ``directory``."""
    scale = 1 if quick else 24
    file_size = 1 << 20
    return Workload(
        directory=directory,
        files=_make_files(directory, 16, file_size),
        file_size=file_size,
        readers=64,
        reads_per_reader=25 * scale,
        clients=16,
        round_trips=25 * scale,
    )


def announce(work: Workload, line: Lines) -> None:
    line()
    line(
        f"demo: {work.readers} tasks x {work.reads_per_reader} random 4 KiB file reads "
        f"(plus a 4 KiB write every {WRITE_EVERY} reads), while {work.clients} TCP clients "
        f"do {work.round_trips} echo round trips each"
    )
    line.out.flush()  # before the progress lines on stderr


def run_demo(work: Workload) -> Outcome:
    """The demo on nursery_io, with the peak number of threads it used."""
    workers.reset_peak()
    progress = Progress("nursery_io", work.total_reads + work.total_round_trips)
    with ThreadPeak() as peak:
        ours = nursery_io.run(_nursery_io_demo, work, progress)
    ours.peak_threads = peak.peak
    ours.details["kernel_workers"] = peak.peak_kernel_workers
    return ours


def showcase(quick: bool, finish: Callable[[Workload, Outcome, Lines], None]) -> None:
    """Print what the kernel layer found, run the demo, then ``finish(work, ours, line)``
    (the report) while the demo's files still exist."""
    line = Lines(sys.stdout)
    print_header(line)
    with tempfile.TemporaryDirectory(prefix="nursery_io-showcase-") as directory:
        work = make_workload(directory, quick)
        announce(work, line)
        ours = run_demo(work)
        # Report now: removing the demo's files (the with block's exit) can take seconds.
        finish(work, ours, line)
        line.out.flush()


def _report(work: Workload, ours: Outcome, line: Lines) -> None:
    report_statistics(ours, line)
    line()
    line(f"=> {verdict_of(ours)}.", 2, hang=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nursery_io", description="Show what nursery_io found and what it does."
    )
    parser.add_argument("--quick", action="store_true", help="a smaller demo (a second or two)")
    args = parser.parse_args(argv)
    showcase(args.quick, _report)
    return 0
