import os
import signal

import nursery_io
from nursery_io import lowlevel


async def worker(name: str) -> None:
    try:
        await nursery_io.sleep(10)
    finally:
        # KeyboardInterrupt cancels every task: their cleanup runs, as for any cancellation.
        print(f"{name}: cleaning up")


@lowlevel.enable_ki_protection
async def update_both(books: dict[str, int]) -> None:
    # Protected: Ctrl-C can't land between these two lines, only at a checkpoint later.
    books["debit"] -= 10
    books["credit"] += 10


async def main() -> None:
    books = {"debit": 100, "credit": 0}
    await update_both(books)
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(worker, "worker 1")
        nursery.start_soon(worker, "worker 2")
        await nursery_io.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # what pressing Ctrl-C does
        await nursery_io.sleep(10)


if __name__ == "__main__":
    try:
        nursery_io.run(main)
    except* KeyboardInterrupt:
        # It comes out of the nursery inside an exception group, after every task is done.
        print("interrupted: every task finished its cleanup first")
