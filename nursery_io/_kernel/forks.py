"""The process id, kept current by an at-fork hook, so that the fork checks on hot paths
(``FileEngine``'s fork guard, ``Ring.prep``) compare two ints instead of calling getpid()."""

from __future__ import annotations

import os

__all__ = ["pid"]

pid = os.getpid()


def _after_fork_in_child() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
