"""What the ``NURSERY_IO_*`` debug environment variables switch on when a run starts.

- ``NURSERY_IO_DEBUG_SIGNAL=1`` (or a signal name such as ``USR2``): the signal writes the
  task tree to stderr (main-thread runs only);
- ``NURSERY_IO_CONSOLE=1`` (or a socket path): serve the console endpoint;
- ``NURSERY_IO_TRACE=path`` (``{pid}`` is replaced by the process id): record a
  Chrome/Perfetto trace, written when the run ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._core._runner import Runner

__all__ = ["autostart", "parse_signal"]


def parse_signal(value: str) -> int:
    """``"1"``/``"yes"`` -> SIGUSR1; ``"USR2"``, ``"SIGUSR2"`` or ``"12"`` -> that signal."""
    text = value.strip().upper()
    if text in ("1", "YES", "TRUE", "ON"):
        return signal.SIGUSR1
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    return int(getattr(signal, name))


def _warn(message: str) -> None:
    sys.stderr.write(f"nursery_io: {message}\n")


def autostart(runner: Runner) -> None:
    environ = os.environ
    value = environ.get("NURSERY_IO_DEBUG_SIGNAL")
    # A signal handler can only be installed from the main thread.
    if value and value != "0" and threading.current_thread() is threading.main_thread():
        from ._signal import enable_debug_signal

        try:
            enable_debug_signal(parse_signal(value), _runner=runner)
        except (AttributeError, ValueError, OSError) as exc:
            _warn(f"NURSERY_IO_DEBUG_SIGNAL={value!r} ignored: {exc}")
    value = environ.get("NURSERY_IO_CONSOLE")
    if value and value != "0":
        from ._server import start_console_server_soon

        path = None if value in ("1", "yes", "true", "on") else value
        start_console_server_soon(runner, path)
    value = environ.get("NURSERY_IO_TRACE")
    if value:
        from ._trace import TraceRecorder

        runner.instruments.add_instrument(TraceRecorder(value.replace("{pid}", str(os.getpid()))))
