"""Run one (workload, library) measurement in this fresh process and print one JSON line.

    python -m benchmarks.worker WORKLOAD LIBRARY --params JSON --workdir DIR

The line always has "status": "ok" (with seconds, ops, threads, version, ...), "unavailable"
(the library, or the part of it this workload needs, is not importable or not implemented
yet) or "error". Only the library under test is imported, so libraries can't affect each other.
"""

# Imports stay inside functions so that this process loads only the library under test.

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.workloads import FLAVOURS, Context, Result, load

# Names under which a library might report how many threads it used.
_THREAD_STAT_KEYS = ("peak_threads", "threads_peak", "max_threads", "threads_used", "threads")


class ThreadSampler:
    """Peak thread counts during the timed region, sampled from a helper thread.

    ``os_peak`` counts every thread of the process (/proc/self/task), which includes threads
    that Python doesn't know about (io_uring io-wq workers, libuv's pool); ``py_peak`` is
    ``threading.active_count()``. The sampler's own thread is subtracted from both.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.os_peak = 0
        self.py_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def sample(self) -> None:
        self.os_peak = max(self.os_peak, len(os.listdir("/proc/self/task")) - 1)
        self.py_peak = max(self.py_peak, threading.active_count() - 1)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self._thread.start()
        self.sample()

    def stop(self) -> None:
        # Sample once more from the caller: thread pools keep idle threads around, so the
        # count at the end of the work also catches threads the sampler missed.
        self.sample()
        self._stop.set()
        self._thread.join()


def _jsonable(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth > 3:
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), depth + 1)
    names = [a.name for a in getattr(type(value), "__attrs_attrs__", ())]
    if names:
        return {n: _jsonable(getattr(value, n), depth + 1) for n in names}
    if hasattr(value, "__dict__"):
        return _jsonable(vars(value), depth + 1)
    return repr(value)


def _io_statistics(lib: ModuleType) -> Any:
    """The run's io statistics (Trio's ``current_statistics().io_statistics``), if any."""
    try:
        lowlevel = importlib.import_module(f"{lib.__name__}.lowlevel")
        return _jsonable(lowlevel.current_statistics().io_statistics)
    except Exception:
        return None


def _library_threads(stats: Any) -> int | None:
    if not isinstance(stats, dict):
        return None
    for key in _THREAD_STAT_KEYS:
        if isinstance(stats.get(key), int):
            return int(stats[key])
    return None


def _version(library: str) -> str:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name)
            return str(getattr(module, "__version__", "dev"))

    py = ".".join(map(str, sys.version_info[:3]))
    if library in ("asyncio", "sync"):
        return f"python {py}"
    if library.startswith("anyio-"):
        backend = library.removeprefix("anyio-")
        inner = f"python {py}" if backend == "asyncio" else dist(backend)
        return f"anyio {dist('anyio')} / {backend} {inner}"
    return dist(library)


def _run_async(library: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if library in ("nursery_io", "trio"):
        return importlib.import_module(library).run(main)
    if library == "asyncio":
        import asyncio

        return asyncio.run(main())  # type: ignore[arg-type]
    if library == "uvloop":
        import uvloop

        return uvloop.run(main())  # type: ignore[arg-type]
    import anyio

    backend = library.removeprefix("anyio-")
    if backend == "nursery_io":
        # nursery_io registers its anyio backend when imported.
        import nursery_io  # noqa: F401
    return anyio.run(main, backend=backend)


def measure(workload: str, library: str, ctx: Context) -> dict[str, Any]:
    module = load(workload)
    flavour = FLAVOURS[library]
    variant = getattr(module, f"run_{flavour}")
    sampler = ThreadSampler()
    io_stats: Any = None
    lib = importlib.import_module(library) if flavour == "trio_like" else None

    if flavour == "sync":
        sampler.start()
        t0 = time.perf_counter()
        outcome = variant(ctx)
        seconds = time.perf_counter() - t0
        sampler.stop()
    else:

        async def timed() -> tuple[Any, float]:
            nonlocal io_stats
            sampler.start()
            t0 = time.perf_counter()
            result = await (variant(lib, ctx) if lib is not None else variant(ctx))
            elapsed = time.perf_counter() - t0
            sampler.stop()
            if lib is not None:
                io_stats = _io_statistics(lib)
            return result, elapsed

        outcome, seconds = _run_async(library, timed)

    if isinstance(outcome, Result):
        ops = outcome.ops
        seconds = outcome.seconds if outcome.seconds is not None else seconds
    else:
        ops = int(outcome)
    return {
        "status": "ok",
        "seconds": seconds,
        "ops": ops,
        "threads": sampler.os_peak,
        "py_threads": sampler.py_peak,
        "library_threads": _library_threads(io_stats),
        "io_statistics": io_stats,
        "notes": ", ".join(ctx.notes),
    }


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _is_missing_feature(exc: BaseException) -> bool:
    """True for "not there yet": missing module, missing module attribute, unregistered
    anyio backend (LookupError) or an explicit NotImplementedError."""
    if isinstance(exc, ImportError | NotImplementedError | LookupError):
        return not isinstance(exc, KeyError | IndexError)
    return isinstance(exc, AttributeError) and isinstance(exc.obj, ModuleType)


def classify(exc: BaseException) -> dict[str, Any]:
    leaves = _leaves(exc)
    first = leaves[0]
    message = f"{type(first).__name__}: {first}"
    if all(_is_missing_feature(leaf) for leaf in leaves):
        return {"status": "unavailable", "reason": message}
    tail = "".join(traceback.format_exception(exc)).strip().splitlines()[-12:]
    return {"status": "error", "error": message, "traceback": tail}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload")
    parser.add_argument("library", choices=sorted(FLAVOURS))
    parser.add_argument("--params", default="{}", help="workload parameters as JSON")
    parser.add_argument("--workdir", default=".", help="scratch directory for data files")
    args = parser.parse_args(argv)

    module = load(args.workload)
    ctx = Context(params=json.loads(args.params), workdir=Path(args.workdir))
    report: dict[str, Any] = {"workload": args.workload, "library": args.library}
    try:
        if hasattr(module, "setup"):
            ctx.state = module.setup(ctx)
        try:
            report |= measure(args.workload, args.library, ctx)
        finally:
            if hasattr(module, "teardown"):
                module.teardown(ctx)
    except BaseException as exc:
        report |= classify(exc)
    report["version"] = _version(args.library)
    # Last line of stdout, flushed: the parent reads only this.
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
