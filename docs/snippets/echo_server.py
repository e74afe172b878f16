from functools import partial

import nursery_io


async def echo(stream: nursery_io.SocketStream) -> None:
    # serve_tcp runs this in a new task for every connection, and closes
    # the stream when it returns.
    print("connection from", stream.socket.getpeername())
    async for data in stream:  # ends when the client closes its side
        await stream.send_all(data)


async def client(port: int) -> None:
    async with await nursery_io.open_tcp_stream("127.0.0.1", port) as stream:
        for message in [b"hello", b"echo"]:
            await stream.send_all(message)
            reply = await stream.receive_some()
            print("client got", reply)


async def main() -> None:
    async with nursery_io.open_nursery() as nursery:
        # nursery.start waits until the server is listening and returns its
        # listeners. Port 0 lets the kernel pick a free port; start() passes
        # positional arguments only, so the host goes in through partial().
        serve = partial(nursery_io.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        await client(port)
        # The server would run forever: cancel it to end the program.
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    nursery_io.run(main)
