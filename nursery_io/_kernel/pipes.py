"""``PipePool``: the pipe pairs that splice transfers borrow (one per transfer in progress).

``splice(2)`` moves pages between descriptors only if one side is a pipe, so a file-to-socket
copy is two splices: file -> pipe, then pipe -> socket. Creating a pipe and growing it costs
a few system calls, so the engine keeps the pairs of finished transfers for the next ones.

A pair goes back to the pool only if its transfer said it is empty: bytes left over by a
cancelled or failed transfer would otherwise be sent at the head of somebody else's data.
Such a pair is closed instead (closing is what drains it).
"""

from __future__ import annotations

import fcntl
import os
from typing import Final

__all__ = ["DEFAULT_PIPE_SIZE", "PipePool"]

#: What each pipe is grown to (``F_SETPIPE_SZ``): the size of one splice chunk. Pages are
#: allocated only while data sits in the pipe, so idle pairs cost two descriptors each.
DEFAULT_PIPE_SIZE: Final = 1 << 20

_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ: Final = getattr(fcntl, "F_GETPIPE_SZ", 1032)


class PipePool:
    """Idle pipe pairs ``(read_fd, write_fd, capacity)``; loop thread only."""

    __slots__ = ("_idle", "_pid", "closed", "created", "keep", "size")

    def __init__(self, size: int = DEFAULT_PIPE_SIZE, keep: int = 64) -> None:
        self.size = size
        self.keep = keep
        self._idle: list[tuple[int, int, int]] = []
        self._pid = os.getpid()
        self.closed = False
        #: Pairs created so far (statistics and tests).
        self.created = 0

    def take(self) -> tuple[int, int, int]:
        """An empty pipe pair, reused or new (``OSError`` if none can be created)."""
        if self._pid != os.getpid():
            # Forked child: these pipes are shared with the parent. Drop our copies.
            self._pid = os.getpid()
            self._close_idle()
        if self._idle:
            return self._idle.pop()
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            capacity = fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
        except OSError:
            # Above /proc/sys/fs/pipe-max-size, or the user's pipe quota: keep the default.
            capacity = fcntl.fcntl(w, _F_GETPIPE_SZ)
        self.created += 1
        return r, w, capacity

    def give_back(self, pipe: tuple[int, int, int], *, empty: bool) -> None:
        """Return a pair taken with :meth:`take`; ``empty=False`` closes it."""
        if empty and not self.closed and len(self._idle) < self.keep and self._pid == os.getpid():
            self._idle.append(pipe)
            return
        os.close(pipe[0])
        os.close(pipe[1])

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for r, w, _ in idle:
            os.close(r)
            os.close(w)

    def close(self) -> None:
        """Close every idle pair; pairs given back later are closed too."""
        self.closed = True
        self._close_idle()
