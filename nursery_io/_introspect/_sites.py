"""Where each lock, event or channel was created: recorded only once introspection is on.

Every synchronization primitive sleeps on a :class:`ParkingLot` and every memory channel
keeps a ``_ChannelState``; wrapping those two constructors covers them all. Until
:func:`record_creation_sites` is called nothing is wrapped, so programs that never turn
introspection on pay nothing. Once on, each construction costs a short walk up the stack
to the first frame outside nursery_io.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from typing import Any

__all__ = ["creation_site", "record_creation_sites", "recording_creation_sites"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_sites: weakref.WeakKeyDictionary[object, tuple[str, int, str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_enabled = False
_originals: list[tuple[type, str, Any]] = []


def _caller_site() -> tuple[str, int, str] | None:
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            return filename, frame.f_lineno, frame.f_code.co_name
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _wrap_init(cls: type) -> None:
    original = cls.__init__  # type: ignore[misc]
    _originals.append((cls, "__init__", cls.__dict__["__init__"]))

    @functools.wraps(original)
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        site = _caller_site()
        if site is not None:
            _sites[self] = site

    cls.__init__ = __init__  # type: ignore[misc]


def _wrap_factory(cls: type) -> None:
    # Memory channel ends are made by a private classmethod (open_memory_channel, clone).
    original = cls._create  # type: ignore[attr-defined]
    _originals.append((cls, "_create", cls.__dict__["_create"]))

    def _create(state: object) -> object:
        end = original(state)
        site = _caller_site()
        if site is not None:
            _sites[end] = site
        return end

    setattr(cls, "_create", staticmethod(_create))  # noqa: B010


def record_creation_sites() -> None:
    """From now on, remember where each lock, event, semaphore, condition and memory
    channel is created, so task-tree dumps can say so. Process-wide and permanent; idempotent.
    Objects created before the call have no recorded site."""
    global _enabled
    with _lock:
        if _enabled:
            return
        from .._channel import MemoryReceiveChannel, MemorySendChannel
        from .._core._parking_lot import ParkingLot

        _wrap_init(ParkingLot)
        _wrap_factory(MemorySendChannel)
        _wrap_factory(MemoryReceiveChannel)
        _enabled = True


def stop_recording_creation_sites() -> None:
    """Undo :func:`record_creation_sites` (for tests: put the constructors back)."""
    global _enabled
    with _lock:
        while _originals:
            cls, name, original = _originals.pop()
            setattr(cls, name, original)
        _sites.clear()
        _enabled = False


def recording_creation_sites() -> bool:
    """Whether :func:`record_creation_sites` has been called."""
    return _enabled


def creation_site(obj: object) -> tuple[str, int, str] | None:
    """``(filename, lineno, function)`` where ``obj`` was created, if recorded."""
    if not _sites:  # nothing recorded (the usual case): skip making a weak reference
        return None
    try:
        return _sites.get(obj)
    except TypeError:  # not weak-referenceable
        return None
