"""pytest integration: print the task tree of a test's run when the test times out.

A test that deadlocks (two tasks each waiting for the other's lock, a receive nobody
sends to, ...) just hangs until pytest-timeout fails it, and pytest-timeout's thread
stacks show the event loop sleeping, not the tasks. This module is a small pytest plugin
(registered by nursery_io's pytest plugin) that, when pytest-timeout's SIGALRM fires
during a run, writes that run's task tree first: which task waits on what, where, and any
lock cycle.

Only pytest-timeout's ``signal`` method (the default on Linux) is handled: the ``thread``
method ends the process from another thread, where the run's tasks can't be read safely.
The dump is taken inside the signal handler, while a task may be in the middle of a step;
it only reads, and the test is failing anyway.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Generator
from typing import Any, TextIO

import pytest

from .._core._context import GLOBAL_RUN_CONTEXT

__all__ = ["dump_current_run", "pytest_timeout_set_timer"]


def dump_current_run(file: TextIO | None = None, *, title: str = "nursery_io task tree") -> bool:
    """Write the task tree of the run active in this thread, if any; True if one was.
    Never raises (it runs in the middle of reporting another failure)."""
    runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
    if runner is None:
        return False
    out = sys.stderr if file is None else file
    try:
        from ._format import format_snapshot
        from ._snapshot import take_snapshot
        from ._timing import timer_of

        text = format_snapshot(take_snapshot(runner, timing=timer_of(runner)))
        out.write(f"{'+' * 20} {title} {'+' * 20}\n{text}")
        out.flush()
    except Exception as exc:
        try:
            out.write(f"nursery_io: could not dump the task tree: {exc!r}\n")
        except Exception:
            pass
    return True


@pytest.hookimpl(hookwrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, None, None]:
    """After pytest-timeout armed its SIGALRM, put a handler in front of it that dumps
    the run's task tree first."""
    yield
    if not hasattr(signal, "SIGALRM"):
        return
    timeout_handler = signal.getsignal(signal.SIGALRM)
    if not callable(timeout_handler) or getattr(settings, "method", None) != "signal":
        return

    def handler(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        terminal = item.config.get_terminal_writer()
        dump_current_run(
            getattr(terminal, "_file", None),
            title=f"nursery_io task tree at timeout of {item.nodeid}",
        )
        timeout_handler(signum, frame)

    signal.signal(signal.SIGALRM, handler)


# A deadlock without pytest-timeout: the task tree can still be had with
# ``NURSERY_IO_DEBUG_SIGNAL=1`` and ``kill -USR1 <pid of pytest>``.
