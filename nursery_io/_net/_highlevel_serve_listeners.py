"""``serve_listeners``: the accept loop, with back-off when the process runs out of fds."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn, TypeVar

from .._core import TASK_STATUS_IGNORED, Nursery, TaskStatus, open_nursery
from .._highlevel_generic import aclose_forcefully
from .._timeouts import sleep
from ..abc import AsyncResource, Listener

__all__ = ["serve_listeners"]

StreamT = TypeVar("StreamT", bound=AsyncResource)
ListenerT = TypeVar("ListenerT", bound=Listener[Any])

LOGGER: Final = logging.getLogger("nursery_io.serve_listeners")

# accept(2) errors that say "the system is out of something right now", not "this listener is
# broken": EMFILE/ENFILE (fd limits), ENOMEM/ENOBUFS (kernel memory). Existing connections
# finishing will free resources, so wait and try again rather than crashing the server.
_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_BACKOFF_SECONDS: Final = 0.100


async def _run_handler(stream: StreamT, handler: Callable[[StreamT], Awaitable[object]]) -> None:
    try:
        await handler(stream)
    finally:
        await aclose_forcefully(stream)


async def _serve_one_listener(
    listener: Listener[StreamT],
    handler_nursery: Nursery,
    handler: Callable[[StreamT], Awaitable[object]],
) -> NoReturn:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _CAPACITY_ERRNOS:
                    raise
                LOGGER.error(
                    "accept returned %s (%s); retrying in %s seconds",
                    errno.errorcode.get(exc.errno, exc.errno),
                    os.strerror(exc.errno),
                    _BACKOFF_SECONDS,
                    exc_info=True,
                )
                await sleep(_BACKOFF_SECONDS)
            else:
                handler_nursery.start_soon(_run_handler, stream, handler)


async def serve_listeners(
    handler: Callable[[StreamT], Awaitable[object]],
    listeners: list[ListenerT],
    *,
    handler_nursery: Nursery | None = None,
    task_status: TaskStatus[list[ListenerT]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept connections on every listener, forever, and run ``await handler(stream)`` for
    each in a new task.

    Handlers run in ``handler_nursery`` if given, else in a nursery of this call (so they
    are cancelled with it). Each stream is closed (forcefully) when its handler returns or
    raises; an exception from a handler propagates through that nursery, as usual.

    The listeners are closed when serving stops. If ``accept`` fails because the process
    or system is out of resources (``EMFILE``, ``ENFILE``, ``ENOMEM``, ``ENOBUFS``), the
    error is logged to the ``nursery_io.serve_listeners`` logger and accepting resumes
    after 100 ms; any other error propagates.

    With ``nursery.start(serve_listeners, ...)``, ``start`` returns the listeners once the
    accept loops are running. Never returns normally; cancel it to stop.
    """
    async with open_nursery() as nursery:
        if handler_nursery is None:
            handler_nursery = nursery
        for listener in listeners:
            nursery.start_soon(_serve_one_listener, listener, handler_nursery, handler)
        # The sockets already queue incoming connections, so "started" is true now.
        task_status.started(listeners)
    raise AssertionError("serve_listeners' accept loops never exit normally")
