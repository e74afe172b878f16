"""A TCP echo server: every byte a client sends comes straight back.

    python examples/echo_server.py --port 12345

Try it with ``examples/echo_client.py`` or ``nc 127.0.0.1 12345``. Stop it with Ctrl+C.

``serve_tcp`` runs the accept loop and starts one task per connection inside its own nursery,
so the server is a tree: the accept loop and every connection handler are children of one
nursery. When the server is cancelled (Ctrl+C), every handler is cancelled with it and every
socket is closed -- nothing is left running in the background. Each connection is closed as
soon as its handler returns, whether it returns normally or because the client went away.
"""

from __future__ import annotations

import argparse
from functools import partial

import nursery_io

DEFAULT_PORT = 12345


async def echo_handler(stream: nursery_io.SocketStream) -> None:
    """Send back everything received on ``stream`` until the client closes its side."""
    try:
        # Iterating a stream yields chunks as they arrive and stops at end-of-file.
        async for chunk in stream:
            await stream.send_all(chunk)
    except nursery_io.BrokenResourceError:
        # The client vanished (connection reset). That is the client's problem, not the
        # server's: if we let the error escape, it would cancel the whole server nursery.
        pass


async def serve_echo(
    port: int,
    host: str = "127.0.0.1",
    *,
    task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
) -> None:
    """Serve echo connections on ``host:port`` until cancelled.

    Use it as ``port = await nursery.start(serve_echo, 0)``: ``start`` returns once the
    server is accepting connections, with the port it listens on (``port=0`` asks the
    kernel for any free port).
    """
    async with nursery_io.open_nursery() as nursery:
        # serve_tcp reports its listening sockets through nursery.start; we pass on the port.
        listeners = await nursery.start(
            partial(nursery_io.serve_tcp, echo_handler, port, host=host)
        )
        task_status.started(listeners[0].socket.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    args = parser.parse_args(argv)

    async def run_server() -> None:
        async with nursery_io.open_nursery() as nursery:
            port = await nursery.start(serve_echo, args.port, args.host)
            # flush: a parent process (the test) waits for this line to learn the port.
            print(f"echo server listening on {args.host}:{port}", flush=True)

    try:
        nursery_io.run(run_server)
    except* KeyboardInterrupt:
        # Ctrl+C arrives in whichever task was running, so it comes out of the nursery
        # wrapped in an exception group (hence except*), after everything was cancelled.
        print("echo server stopped")


if __name__ == "__main__":
    main()
