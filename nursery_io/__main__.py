"""``python -m nursery_io``: report what the runtime found on this machine."""

from __future__ import annotations

import platform
import sys

import nursery_io


def _describe_file_engine() -> str:
    from nursery_io._kernel import engine as engine_module

    engine = engine_module.FileEngine(lambda callback: callback())
    try:
        stats = engine.statistics()
        if stats.engine == "io_uring":
            ops = ", ".join(sorted(stats.supported_opcodes))
            return f"io_uring (ops: {ops})"
        return f"worker threads ({stats.fallback_reason})"
    finally:
        engine.close()


def main() -> int:
    print(
        f"nursery_io {nursery_io.__version__} on Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )
    print("  sockets, pipes, signals: epoll")
    try:
        print(f"  files: {_describe_file_engine()}")
    except ImportError:
        print("  files: worker threads (io_uring engine not built yet)")

    async def hello() -> int:
        async with nursery_io.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(nursery_io.sleep, 0)
        return nursery_io.lowlevel.current_statistics().task_steps

    steps = nursery_io.run(hello)
    print(f"  scheduler: ok ({steps} task steps in a 100-task smoke run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
