import trustme  # throwaway certificates for the example: pip install trustme
from OpenSSL import SSL  # DTLS needs pyOpenSSL: pip install pyopenssl

import nursery_io

# A private CA and a server certificate; a real server loads its own certificate.
ca = trustme.CA()
server_context = SSL.Context(SSL.DTLS_METHOD)
ca.issue_cert("example.com").configure_cert(server_context)
client_context = SSL.Context(SSL.DTLS_METHOD)
ca.configure_trust(client_context)


def udp_socket() -> nursery_io.socket.SocketType:
    return nursery_io.socket.socket(type=nursery_io.socket.SOCK_DGRAM)


async def echo(channel: nursery_io.DTLSChannel) -> None:
    # The peer passed the cookie exchange; the handshake runs on first use.
    async for datagram in channel:
        await channel.send(datagram)


async def main() -> None:
    with nursery_io.DTLSEndpoint(udp_socket()) as server:
        await server.socket.bind(("127.0.0.1", 0))
        async with nursery_io.open_nursery() as nursery:
            await nursery.start(server.serve, server_context, echo)
            with nursery_io.DTLSEndpoint(udp_socket()) as client:
                channel = client.connect(server.socket.getsockname(), client_context)
                await channel.do_handshake()
                print("client: room for", channel.get_cleartext_mtu(), "bytes per datagram")
                for word in [b"hello", b"over", b"DTLS"]:
                    await channel.send(word)
                    print("client got", await channel.receive())
                print(channel.statistics())
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    nursery_io.run(main)
