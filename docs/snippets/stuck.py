"""A program that gets stuck three ways, and prints its own task tree."""

import functools
import sys

import nursery_io
from nursery_io import lowlevel


async def transfer(source: nursery_io.Lock, target: nursery_io.Lock) -> None:
    async with source:
        await nursery_io.sleep(0.1)
        async with target:  # each transfer holds one lock and waits for the other
            pass


async def handle(stream: nursery_io.SocketStream) -> None:
    await stream.receive_some(1024)  # the clients never send anything


async def main() -> None:
    lowlevel.record_creation_sites()  # "created at ..." in the dump
    accounts = nursery_io.Lock()
    ledger = nursery_io.Lock()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(transfer, accounts, ledger, name="debit")
        nursery.start_soon(transfer, ledger, accounts, name="credit")
        listeners = await nursery.start(
            functools.partial(nursery_io.serve_tcp, handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        clients = [await nursery_io.open_tcp_stream("127.0.0.1", port) for _ in range(200)]
        with nursery_io.move_on_after(1):
            await nursery_io.sleep(0.5)
            # What `kill -USR1` would write to stderr with NURSERY_IO_DEBUG_SIGNAL=1:
            lowlevel.print_task_tree(sys.stdout)
        nursery.cancel_scope.cancel()
    for client in clients:
        await client.aclose()


nursery_io.run(main)
