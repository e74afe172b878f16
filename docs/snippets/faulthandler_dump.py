import faulthandler
import signal
import sys
import time

import nursery_io


async def main() -> None:
    # `kill -USR1 <pid>` now prints every thread's stack, even while the loop is blocked.
    faulthandler.register(signal.SIGUSR1, file=sys.stdout)
    # And if this program is still running in 5 seconds, dump the stacks and exit.
    faulthandler.dump_traceback_later(5, exit=True, file=sys.stdout)
    time.sleep(0.1)  # a blocking call by mistake: no task can run meanwhile
    faulthandler.cancel_dump_traceback_later()
    print("finished in time")


if __name__ == "__main__":
    nursery_io.run(main)
