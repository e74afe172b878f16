"""Helpers for testing code that uses nursery_io.

``RaisesGroup`` and ``Matcher`` are also here, deprecated as in Trio (use
``pytest.RaisesGroup`` / ``pytest.RaisesExc``): they are loaded, together with pytest, on
first use, with Trio's ``DeprecationWarning``.
"""

from typing import Any

from .._core import MockClock, wait_all_tasks_blocked
from .._threads import active_thread_count, wait_all_threads_completed
from ._check_streams import (
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
)
from ._checkpoints import assert_checkpoints, assert_no_checkpoints
from ._memory_streams import (
    MemoryReceiveStream,
    MemorySendStream,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
)
from ._network import open_stream_to_socket_listener
from ._run_test import run_test, trio_test
from ._sequencer import Sequencer

__all__ = [
    "MemoryReceiveStream",
    "MemorySendStream",
    "MockClock",
    "Sequencer",
    "active_thread_count",
    "assert_checkpoints",
    "assert_no_checkpoints",
    "check_half_closeable_stream",
    "check_one_way_stream",
    "check_two_way_stream",
    "lockstep_stream_one_way_pair",
    "lockstep_stream_pair",
    "memory_stream_one_way_pair",
    "memory_stream_pair",
    "memory_stream_pump",
    "open_stream_to_socket_listener",
    "run_test",
    "trio_test",
    "wait_all_tasks_blocked",
    "wait_all_threads_completed",
]


# Trio 0.33 deprecated these in favour of pytest's versions: same warning, same text.
_DEPRECATED_FOR_PYTEST = {
    "RaisesGroup": "https://docs.pytest.org/en/stable/reference/reference.html#pytest.RaisesGroup",
    "Matcher": "https://docs.pytest.org/en/stable/reference/reference.html#pytest.RaisesExc",
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED_FOR_PYTEST:
        from .. import _deprecate
        from . import _raises_group

        _deprecate.warn_deprecated(
            f"{__name__}.{name}",
            "0.33.0",
            issue=3326,
            instead=f"See {_DEPRECATED_FOR_PYTEST[name]}",
            stacklevel=2,
        )
        return getattr(_raises_group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
