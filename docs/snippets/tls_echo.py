import ssl
from functools import partial

import trustme  # throwaway certificates for the example: pip install trustme

import nursery_io

# A private CA and a certificate for 127.0.0.1; a real server loads its own
# certificate, and clients trust the system's CAs.
ca = trustme.CA()
server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ca.issue_cert("127.0.0.1").configure_cert(server_context)
client_context = ssl.create_default_context()
ca.configure_trust(client_context)


async def echo(stream: nursery_io.SSLStream[nursery_io.SocketStream]) -> None:
    # The handshake happens on the first receive_some; a client that fails it
    # makes that call raise BrokenResourceError.
    try:
        async for data in stream:  # ends at the client's close_notify
            await stream.send_all(data)
        await stream.aclose()  # send our close_notify in turn
    except nursery_io.BrokenResourceError as exc:
        print("server: connection failed:", exc.__cause__)


async def client(port: int) -> None:
    stream = await nursery_io.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=client_context
    )
    async with stream:
        await stream.do_handshake()  # optional: look at the session first
        print("client: negotiated", stream.version())
        await stream.send_all(b"hello over TLS")
        print("client got", await stream.receive_some())


async def main() -> None:
    async with nursery_io.open_nursery() as nursery:
        serve = partial(nursery_io.serve_ssl_over_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo, 0, server_context)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        await client(port)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    nursery_io.run(main)
