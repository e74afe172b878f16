"""The client side of the console endpoint (plain blocking sockets: no run needed)."""

from __future__ import annotations

import json
import socket
from typing import Any

from ._server import find_socket

__all__ = ["ConsoleConnection", "ConsoleError"]


class ConsoleError(Exception):
    """The endpoint refused us or answered with an error."""


class ConsoleConnection:
    """One connection to a run's console endpoint (``target``: a pid or a socket path)."""

    def __init__(self, target: str, *, timeout: float = 10.0) -> None:
        self.path = find_socket(target)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except BaseException:
            self._sock.close()
            raise
        self._buffer = b""

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused: the reason may be waiting to be read
        while b"\n" not in self._buffer:
            data = self._sock.recv(1 << 20)
            if not data:
                raise ConsoleError("the program closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ConsoleError(reply["error"])
        return reply

    def snapshot(self, *, timing: bool = False) -> dict[str, Any]:
        return self.request({"cmd": "snapshot", "timing": timing})

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ConsoleConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
