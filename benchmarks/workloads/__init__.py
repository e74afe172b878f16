"""Workload registry and the small contract every workload module follows.

A workload module defines:

- ``TITLE`` (one line), ``UNIT`` (what one op is, e.g. "tasks"), ``SIZES`` (``"full"`` and
  ``"quick"`` parameter dicts), ``REFERENCE`` (the peer named in the targets, usually "trio"),
  ``TARGETS`` (a tuple of :class:`Target`), optionally ``NOTES`` (library -> short remark);
- one function per *flavour* it supports:
  ``run_trio_like(lib, ctx)`` (used for nursery_io and trio, ``lib`` is the module),
  ``run_asyncio(ctx)`` (asyncio and uvloop), ``run_anyio(ctx)`` (every anyio backend),
  ``run_sync(ctx)`` (a plain synchronous floor);
- optionally ``prepare(params, workdir) -> dict`` (parent process, once per workload, e.g. to
  create data files; the dict is merged into the params) and ``setup(ctx) -> object`` /
  ``teardown(ctx)`` (worker process, per run, not timed).

Every variant returns the number of ops done (or a :class:`Result` when it has its own clock,
as the TCP client does) and must do the same work as the other variants.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Params = dict[str, Any]

WORKLOADS: tuple[str, ...] = (
    "spawn",
    "channel",
    "to_thread",
    "tcp_echo",
    "file_random_read",
    "file_random_read_cold",
    "small_files",
    "open_read_close",
)

# Display and scheduling order. "sync" is a floor (no event loop), not a library.
LIBRARIES: tuple[str, ...] = (
    "nursery_io",
    "trio",
    "asyncio",
    "uvloop",
    "anyio-nursery_io",
    "anyio-trio",
    "anyio-asyncio",
    "sync",
)

FLAVOURS: dict[str, str] = {
    "nursery_io": "trio_like",
    "trio": "trio_like",
    "asyncio": "asyncio",
    "uvloop": "asyncio",
    "anyio-nursery_io": "anyio",
    "anyio-trio": "anyio",
    "anyio-asyncio": "anyio",
    "sync": "sync",
}

BASELINE = "nursery_io"


@dataclass(frozen=True)
class Target:
    """A goal from the issues, checked against nursery_io's median.

    ``min_speedup``: peer median time / nursery_io median time must be at least this
    (0.2 means "within 5x of the peer"). ``max_threads``: nursery_io's peak thread count.
    """

    text: str
    peer: str | None = None
    min_speedup: float | None = None
    max_threads: int | None = None


@dataclass
class Result:
    """What a variant returns when a plain op count is not enough."""

    ops: int
    seconds: float | None = None  # overrides the worker's own clock when set


@dataclass
class Context:
    params: Params
    workdir: Path
    state: Any = None
    notes: list[str] = field(default_factory=list)


def load(name: str) -> ModuleType:
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(f"benchmarks.workloads.{name}")


def supported_libraries(module: ModuleType) -> list[str]:
    """Libraries for which the module has a variant, in display order."""
    return [lib for lib in LIBRARIES if hasattr(module, f"run_{FLAVOURS[lib]}")]
