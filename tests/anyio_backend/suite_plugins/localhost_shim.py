"""``-p localhost_shim``: make "localhost" resolve to ::1 as well as 127.0.0.1.

Some machines' /etc/hosts list localhost for IPv4 only, which fails every IPv6 variant
of anyio's socket tests for environmental reasons. This wraps the resolver in-process
(and maps AF_INET6 bind/connect of "localhost" to ::1, since the C socket calls resolve
on their own), and resolves the two IDNA test hosts the way anyio's CI /etc/hosts does.
"""

from __future__ import annotations

import socket
from typing import Any

_real_getaddrinfo = socket.getaddrinfo
_FAKE_HOSTS = {"xn--fa-hia.de": "1.2.3.4", "fass.de": "5.6.7.8"}


def _shimmed_getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> Any:
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if name == "localhost":
        results: list[Any] = []
        if family in (0, socket.AF_INET6):
            results += _real_getaddrinfo("::1", port, socket.AF_INET6, type, proto, flags)
        if family in (0, socket.AF_INET):
            results += _real_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
        return results
    if name in _FAKE_HOSTS:
        return _real_getaddrinfo(_FAKE_HOSTS[name], port, family, type, proto, flags)
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def _ipv6_localhost(method_name: str) -> None:
    original = getattr(socket.socket, method_name)

    def method(self: socket.socket, address: Any, *args: Any) -> Any:
        if (
            self.family == socket.AF_INET6
            and isinstance(address, tuple)
            and address
            and address[0] == "localhost"
        ):
            address = ("::1", *address[1:])
        return original(self, address, *args)

    setattr(socket.socket, method_name, method)


socket.getaddrinfo = _shimmed_getaddrinfo
for _name in ("bind", "connect", "connect_ex"):
    _ipv6_localhost(_name)
