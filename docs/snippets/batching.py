import os
import tempfile

import nursery_io
from nursery_io.lowlevel import ops, run_op


async def read_block(fd: int, offset: int, results: dict[int, bytes]) -> None:
    # One READ operation; io_uring performs it, or a worker thread if io_uring is off.
    results[offset] = await run_op(ops.read(fd, 4096, offset))


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "data.bin")
        await nursery_io.Path(path).write_bytes(os.urandom(64 * 4096))
        fd = await run_op(ops.openat(path, os.O_RDONLY))
        try:
            results: dict[int, bytes] = {}
            async with nursery_io.open_nursery() as nursery:
                for block in range(64):
                    nursery.start_soon(read_block, fd, block * 4096, results)
            assert all(len(data) == 4096 for data in results.values())
        finally:
            await run_op(ops.close(fd))

    files = nursery_io.lowlevel.current_statistics().io_statistics.file_engine
    print("engine:", files.engine)
    print("ops by engine:", dict(files.ops_by_engine))
    print("io_uring_enter calls:", files.submit_syscalls, "for", files.ops_submitted, "ops")
    print("peak worker threads:", files.peak_worker_threads)


if __name__ == "__main__":
    nursery_io.run(main)
