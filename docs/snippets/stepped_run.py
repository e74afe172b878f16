import nursery_io
from nursery_io.lowlevel import SteppedRun


async def work() -> str:
    async with nursery_io.open_nursery() as nursery:
        for delay in (0.02, 0.01):
            nursery.start_soon(nursery_io.sleep, delay)
    return "finished"


def host_loop() -> None:
    run = SteppedRun(work)
    turns = 0
    # Each turn runs the tasks that are ready and waits for I/O or timers for at
    # most `timeout` seconds, so the host gets control back regularly.
    while run.turn(timeout=0.005):
        turns += 1  # the host's own work would go here
    print(run.result(), "after", turns, "turns")


if __name__ == "__main__":
    host_loop()
