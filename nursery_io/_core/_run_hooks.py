"""Opt-in debug tooling switched on by environment variables when a run starts.

The tooling lives above the core (``nursery_io._introspect``) and is imported by name
only when one of the variables is set, so the core neither depends on it nor pays for it:
a run without them costs three environment lookups.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["DEBUG_ENV_VARS", "at_run_start"]

#: SIGUSR1 dumps the task tree; the console endpoint; a Chrome/Perfetto trace file.
DEBUG_ENV_VARS: Final = ("NURSERY_IO_DEBUG_SIGNAL", "NURSERY_IO_CONSOLE", "NURSERY_IO_TRACE")


def at_run_start(runner: Runner) -> None:
    """Called by every run (plain, guest or stepped) as it starts, in its thread."""
    environ = os.environ
    for name in DEBUG_ENV_VARS:
        if environ.get(name):
            autostart = importlib.import_module("nursery_io._introspect._autostart")
            autostart.autostart(runner)
            return
