"""TLS set-up shared by the TLS parity tests: one test CA, and SSLStream pairs over memory."""

from __future__ import annotations

import ssl
from types import ModuleType
from typing import Any

import trustme

CA = trustme.CA()
SERVER_CERT = CA.issue_cert("localhost", "127.0.0.1")


def contexts(version: ssl.TLSVersion | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A client context trusting the test CA and a server context with its certificate,
    both limited to ``version`` if given."""
    client_ctx = ssl.create_default_context()
    CA.configure_trust(client_ctx)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    SERVER_CERT.configure_cert(server_ctx)
    if version is not None:
        for context in (client_ctx, server_ctx):
            context.minimum_version = context.maximum_version = version
    return client_ctx, server_ctx


def memory_pair(
    lib: ModuleType,
    version: ssl.TLSVersion | None = None,
    *,
    lockstep: bool = False,
    https_compatible: bool = False,
    hostname: str = "localhost",
    alpn: list[str] | None = None,
) -> tuple[Any, Any]:
    """A client and a server SSLStream over ``lib.testing``'s memory (or lockstep) streams."""
    client_ctx, server_ctx = contexts(version)
    if alpn is not None:
        client_ctx.set_alpn_protocols(alpn)
        server_ctx.set_alpn_protocols(alpn[::-1])
    maker = lib.testing.lockstep_stream_pair if lockstep else lib.testing.memory_stream_pair
    client_transport, server_transport = maker()
    client = lib.SSLStream(
        client_transport,
        client_ctx,
        server_hostname=hostname,
        https_compatible=https_compatible,
    )
    server = lib.SSLStream(
        server_transport, server_ctx, server_side=True, https_compatible=https_compatible
    )
    return client, server
