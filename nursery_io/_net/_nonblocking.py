"""Non-blocking I/O driven by readiness: the loop behind every socket operation,
:class:`SocketStream` and :class:`~nursery_io.lowlevel.FdStream`.

Every operation follows one pattern (Trio's checkpoint semantics, without Trio's cost):

1. ``checkpoint_if_cancelled()`` - raises if the task is cancelled; costs no scheduling;
2. try the non-blocking syscall;
3. it succeeded (or failed with a real error): ``cancel_shielded_checkpoint()``, a plain
   schedule point. The runner throttles kernel polls while tasks stay runnable, so this
   does not cost an ``epoll_wait`` and clock reads per operation (Trio issue #1595);
4. it would block: ``wait_readable``/``wait_writable`` (itself a checkpoint), then retry.

We try the syscall *before* waiting, not after, so that errors come out at once: a socket
that can never become readable (``accept`` before ``listen``) must raise, not hang.

The helpers raise the syscall's own ``OSError``; the streams translate it with
:func:`stream_error`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._core import (
    BrokenResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    wait_writable,
)

__all__ = [
    "call_when_ready",
    "stream_error",
    "write_all_when_ready",
    "write_rest_when_ready",
]

T = TypeVar("T")


async def call_when_ready(
    wait: Callable[[Any], Awaitable[None]], handle: Any, fn: Callable[..., T], *args: Any
) -> T:
    """``fn(*args)``, a non-blocking call on ``handle`` (a socket or fd); while it would
    block, ``await wait(handle)`` and call it again. Always a checkpoint."""
    await checkpoint_if_cancelled()
    try:
        result = fn(*args)
    except BlockingIOError:
        pass
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    else:
        await cancel_shielded_checkpoint()
        return result
    while True:
        await wait(handle)
        try:
            return fn(*args)
        except BlockingIOError:
            pass


async def write_all_when_ready(
    handle: Any, write: Callable[[Any], int], data: bytes | bytearray | memoryview
) -> None:
    """Write all of ``data`` with ``write`` (``sock.send``, or ``os.write`` on an fd),
    waiting for ``handle`` to be writable whenever the kernel buffer is full. Always a
    checkpoint.

    The written count only ever advances by what ``write`` accepted, so a cancellation (or
    an error) leaves exactly a prefix of ``data`` written: nothing lost, nothing doubled.
    """
    # write() counts bytes, while len() of other buffers (memoryview, array) counts items.
    size = len(data) if type(data) is bytes or type(data) is bytearray else memoryview(data).nbytes
    await checkpoint_if_cancelled()
    try:
        sent = write(data)
    except BlockingIOError:
        sent = 0
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    if sent == size:
        # The common case: everything went out at once.
        await cancel_shielded_checkpoint()
        return
    await write_rest_when_ready(handle, write, data, sent)


async def write_rest_when_ready(
    handle: Any, write: Callable[[Any], int], data: bytes | bytearray | memoryview, sent: int
) -> None:
    """The slow half of :func:`write_all_when_ready`: ``data[sent:]`` after a first write
    that came out short (the caller has passed its checkpoint already)."""
    with memoryview(data) as items, items.cast("B") as view:
        size = len(view)
        while sent < size:
            await wait_writable(handle)
            with view[sent:] as rest:
                try:
                    sent += write(rest)
                except BlockingIOError:
                    pass


def stream_error(
    exc: OSError, closed_errnos: frozenset[int], closed_message: str, broken_message: str
) -> Exception:
    """The stream-level exception for ``exc``, with the cause set as ``raise ... from``
    would: an fd that is no longer open gives :class:`~nursery_io.ClosedResourceError`
    (hiding the EBADF noise), anything else :class:`~nursery_io.BrokenResourceError`
    (keeping the OS error as its cause)."""
    error: Exception
    if exc.errno in closed_errnos:
        error = ClosedResourceError(closed_message)
        error.__suppress_context__ = True
    else:
        error = BrokenResourceError(f"{broken_message}: {exc}")
        error.__cause__ = exc
    return error
