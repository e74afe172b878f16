"""A snapshot of a run's tasks, nurseries and kernel state, as plain JSON-able data.

Taken in the run's thread (from a task, or from a ``run_sync_soon`` callback between
batches); formatting and shipping it elsewhere (the console, ``ps``) work on the data
alone. Nothing here changes the run: it reads task objects, frames and kernel tables.

What a blocked task waits on is worked out from what it already leaves behind: the abort
function it parked with (a file op's waiter), ``custom_sleep_data`` (the parking lot or
channel it sleeps in) and the locals of its await frames (the fd of a readiness wait, the
function a worker thread runs, the deadline of a sleep). Nothing is recorded ahead of time
except, once introspection is on, where locks and channels were created (``_sites``).
"""

from __future__ import annotations

import math
import os
import time
import types
from typing import TYPE_CHECKING, Any

from .._core._context import GLOBAL_RUN_CONTEXT
from .._core._parking_lot import ParkingLot
from ._sites import creation_site

if TYPE_CHECKING:
    from .._core._cancel import CancelScope, CancelStatus
    from .._core._nursery import Nursery
    from .._core._runner import Runner
    from .._core._task import Task

__all__ = ["PACKAGE_DIR", "short_path", "take_snapshot"]

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

Json = dict[str, Any]


def _codes() -> dict[types.CodeType, str]:
    """Code objects of the functions a blocked task's frames are recognised by."""
    from .. import _threads, _timeouts
    from .._core import _io, _runner
    from .._core._nursery import Nursery

    return {
        _io._wait.__code__: "fd",
        _timeouts.sleep_forever.__code__: "sleep_forever",
        _timeouts.sleep_until.__code__: "sleep_until",
        _threads.to_thread_run_sync.__code__: "thread",
        Nursery._nested_child_finished.__code__: "nursery",
        _runner.wait_all_tasks_blocked.__code__: "all_blocked",
    }


_CODES: dict[types.CodeType, str] | None = None


_SITE_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR.rstrip(os.sep)) + os.sep


def short_path(filename: str) -> str:
    """A file name short enough for one line: relative to the current directory, to
    site-packages, or to nursery_io's parent directory."""
    if filename.startswith(PACKAGE_DIR):
        return filename[len(_PACKAGE_PARENT) :]
    for marker in _SITE_MARKERS:
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index + len(marker) :]
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith(".." + os.sep + "..") else relative


# Sites already looked up during the current snapshot (many tasks share one lock or
# channel end): id -> text. Cleared by take_snapshot.
_site_memo: dict[int, str | None] = {}


def _site(obj: object) -> str | None:
    key = id(obj)
    if key in _site_memo:
        return _site_memo[key]
    site = creation_site(obj)
    text = None if site is None else f"{short_path(site[0])}:{site[1]}"
    _site_memo[key] = text
    return text


def _frames(task: Task) -> list[tuple[types.FrameType, int]]:
    try:
        return list(task.iter_await_frames())
    except Exception:  # a coroutine replaced by something exotic: show no frames
        return []


def _deadline_in(deadline: float, now: float) -> float | None:
    if deadline == math.inf:
        return None
    if deadline == -math.inf:
        return -math.inf
    return deadline - now


def _seconds_text(value: float) -> str:
    if value == -math.inf or value <= 0:
        return "0s: deadline passed"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.3f}s"


def _scope_info(scope: CancelScope, now: float) -> Json:
    return {
        "deadline_in": _deadline_in(scope._deadline, now),
        "shield": scope._shield,
        "cancel_called": scope._cancel_called,
    }


def _own_scopes(task: Task, now: float, nursery_scopes: set[int]) -> list[Json]:
    """The cancel scopes the task entered itself (innermost first), up to its nursery's
    scope; a child nursery's own scope is shown on the nursery instead."""
    stop: CancelStatus | None = None
    parent = task._parent_nursery
    if parent is not None:
        stop = parent._cancel_status
    status: CancelStatus | None = task._cancel_status
    scopes = []
    while status is not None and status is not stop:
        scope = status.scope
        if id(scope) not in nursery_scopes:
            scopes.append(_scope_info(scope, now))
        status = status.parent
    return scopes


def _lot_owner(lot: ParkingLot, frames: list[tuple[types.FrameType, int]]) -> object:
    """The primitive (Lock, Event, ...) that sleeps on ``lot``, found in the task's frames."""
    for frame, _ in reversed(frames):
        obj = frame.f_locals.get("self")
        if obj is not None and obj is not lot and getattr(obj, "_lot", None) is lot:
            return obj
    return None


def _describe_op(op: Any, engine_of: Any = None) -> Json:
    name = op.name.upper() if isinstance(op.name, str) else str(op.name)
    parts = [name]
    if op.fd >= 0:
        parts.append(f"fd {op.fd}")
    if name in ("READ", "WRITE", "READV", "WRITEV"):
        # No offset means "at the file position" (a pipe, a socket).
        parts.append(str(op.length) if op.offset is None else f"{op.length}@{op.offset}")
    if op.filename is not None:
        filename = op.filename
        if isinstance(filename, bytes):
            filename = filename.decode(errors="replace")
        parts.append(repr(filename))
    engine, where = ("threads", "completing") if engine_of is None else engine_of(op)
    return {
        "text": " ".join(parts),
        "engine": engine,
        "where": where,
        "fd": op.fd,
        "cancel_requested": bool(op.cancel_requested),
    }


def _describe_wait(task: Task, frames: list[tuple[types.FrameType, int]], now: float) -> Json:
    """What a blocked task waits on: ``kind``, ``what`` (one line), ``group`` (the same
    text with instance details left out, so identical waits compress) and details."""
    global _CODES
    if _CODES is None:
        _CODES = _codes()
    abort = task._abort_func
    waiter = getattr(abort, "__self__", None)
    if waiter is not None and type(waiter).__name__ == "_OpWaiter":
        op_info = _describe_op(waiter.op, waiter.engine.describe)
        return {
            "kind": "op",
            "what": f"{op_info['text']} ({op_info['where']})",
            "group": f"{op_info['text'].split(' ')[0]} op on {op_info['engine']}",
            "op": op_info,
        }
    sleep_data = task.custom_sleep_data
    if isinstance(sleep_data, ParkingLot):
        owner = _lot_owner(sleep_data, frames)
        kind = type(owner).__name__ if owner is not None else "ParkingLot"
        site = _site(sleep_data)
        what = f"{kind} at {id(owner if owner is not None else sleep_data):#x}"
        holder = getattr(owner, "_owner", None)
        info: Json = {"kind": kind.lower(), "group": f"{kind}", "created": site}
        if holder is not None:
            info["owner"] = id(holder)
            info["owner_name"] = holder.name
            what += f" held by {holder.name!r}"
        if site is not None:
            what += f" (created at {site})"
        info["what"] = what
        if site is not None:
            info["group"] = f"{kind} created at {site}"
        return info
    state = getattr(sleep_data, "_state", None)
    if state is not None and hasattr(state, "receive_tasks"):
        receiving = task in state.receive_tasks
        kind = "channel_receive" if receiving else "channel_send"
        verb = "receive from" if receiving else "send to"
        site = _site(sleep_data)
        size = state.max_buffer_size
        what = f"{verb} memory channel ({len(state.data)}/{size} buffered)"
        if site is not None:
            what += f" created at {site}"
        return {
            "kind": kind,
            "what": what,
            "group": f"{verb} memory channel" + (f" created at {site}" if site else ""),
            "created": site,
        }
    codes = _CODES
    for frame, _ in reversed(frames):
        role = codes.get(frame.f_code)
        if role is None:
            continue
        f_locals = frame.f_locals
        if role == "fd":
            fd = f_locals.get("fd")
            direction = "writable" if f_locals.get("writable") else "readable"
            return {
                "kind": "fd_" + direction,
                "what": f"fd {fd} {direction}",
                "group": f"fd {direction}",
                "fd": fd,
            }
        if role == "thread":
            fn = f_locals.get("sync_fn")
            fn_name = getattr(fn, "__qualname__", None) or repr(fn)
            return {
                "kind": "thread",
                "what": f"worker thread running {fn_name}",
                "group": f"worker thread running {fn_name}",
            }
        if role in ("sleep_until", "sleep_forever"):
            deadline = f_locals.get("deadline") if role == "sleep_until" else None
            if deadline is None:
                deadline = task._cancel_status.effective_deadline()
            remaining = _deadline_in(deadline, now)
            if remaining is None:
                return {"kind": "sleep", "what": "sleep forever", "group": "sleep forever"}
            return {
                "kind": "sleep",
                "what": f"sleep (wakes in {_seconds_text(remaining)})",
                "group": "sleep",
                "deadline_in": remaining,
            }
        if role == "nursery":
            nursery = f_locals.get("self")
            children = len(getattr(nursery, "_children", ()))
            return {
                "kind": "nursery",
                "what": f"child nursery ({children} running)",
                "group": "child nursery",
                "nursery": id(nursery),
            }
        if role == "all_blocked":
            return {
                "kind": "all_blocked",
                "what": "wait_all_tasks_blocked",
                "group": "wait_all_tasks_blocked",
            }
    name = getattr(abort, "__qualname__", None) or type(abort).__name__
    return {"kind": "other", "what": f"parked (abort function {name})", "group": name}


def _task_record(
    task: Task, running: object, now: float, nursery_scopes: set[int], timing: Any
) -> Json:
    frames = _frames(task)
    if task is running:
        state = "running"
    elif task._abort_func is None:
        state = "runnable"
    else:
        state = "blocked"
    record: Json = {
        "id": id(task),
        "name": task.name,
        "system": task._system_task,
        "state": state,
        "frames": [[f.f_code.co_filename, lineno, f.f_code.co_name] for f, lineno in frames],
        "scopes": _own_scopes(task, now, nursery_scopes),
        "nurseries": [id(n) for n in task._open_nurseries or ()],
        "parent_nursery": id(task._parent_nursery) if task._parent_nursery else None,
        "schedule_points": task._schedule_points,
        "wait": _describe_wait(task, frames, now) if state == "blocked" else None,
    }
    if timing is not None:
        record["timing"] = timing.task_timing(task)
    return record


def _nursery_record(nursery: Nursery, now: float) -> Json:
    children = sorted(nursery._children, key=lambda t: (t.name, id(t)))
    return {
        "id": id(nursery),
        "owner": id(nursery._parent_task),
        "children": [id(t) for t in children],
        "scope": _scope_info(nursery.cancel_scope, now),
        "closed": nursery._closed,
    }


def _iowq_workers() -> int | None:
    """io_uring's kernel worker threads (``iou-wrk-*``) in this process, from /proc."""
    try:
        names = os.listdir("/proc/self/task")
    except OSError:
        return None
    count = 0
    for tid in names:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().startswith("iou-wrk"):
                    count += 1
        except OSError:
            continue
    return count


def _kernel_record(runner: Runner) -> Json:
    from .._kernel import workers

    kernel = runner.kernel
    record: Json = {
        "backend": "epoll",
        "kernel_polls": kernel.polls,
        "fds_watched": kernel.registry.watched_count(),
        "engine": None,
        "iowq_workers": _iowq_workers(),
    }
    stats = workers.worker_statistics()
    record["worker_threads"] = {
        "alive": stats.threads_alive,
        "idle": stats.threads_idle,
        "busy": stats.threads_busy,
        "peak": stats.peak_threads,
        "jobs_run": stats.jobs_run,
    }
    engine = kernel._engine
    if engine is not None:
        io = engine.statistics()
        inline = io.ops_by_engine.get("inline", 0)
        attempts = inline + io.inline_misses
        record["engine"] = {
            "name": io.engine,
            "fallback_reason": io.fallback_reason,
            "ops_by_engine": dict(io.ops_by_engine),
            "in_flight": engine.in_flight_by_engine(),
            "inline_hit_rate": inline / attempts if attempts else None,
            "submit_syscalls": io.submit_syscalls,
            "ops_submitted": io.ops_submitted,
            "ring_entries": io.ring_entries,
            "ring_depth": engine.ring_depth,
            "peak_worker_threads": io.peak_worker_threads,
        }
    return record


def take_snapshot(runner: Runner, *, timing: Any = None) -> Json:
    """Everything the dump, ``ps`` and the console show, as JSON-able data.

    ``timing``: a :class:`~._timing.TaskTimer` whose per-task numbers to include.
    """
    now = runner.clock.current_time()
    running = getattr(GLOBAL_RUN_CONTEXT, "task", None)
    _site_memo.clear()
    tasks = list(runner.tasks)
    nurseries: list[Nursery] = [n for t in tasks for n in t._open_nurseries or ()]
    nursery_scopes = {id(n.cancel_scope) for n in nurseries}
    root = runner.init_task
    stats = runner.statistics()
    snapshot = {
        "version": 1,
        "pid": os.getpid(),
        "wall_time": time.time(),
        "clock_now": now,
        "root": id(root) if root is not None else None,
        "main": id(runner.main_task) if runner.main_task is not None else None,
        "running": id(running) if running is not None else None,
        "tasks": [_task_record(t, running, now, nursery_scopes, timing) for t in tasks],
        "nurseries": [_nursery_record(n, now) for n in nurseries],
        "run": {
            "tasks_living": stats.tasks_living,
            "tasks_runnable": stats.tasks_runnable,
            "seconds_to_next_deadline": _deadline_in(stats.seconds_to_next_deadline + now, now),
            "run_sync_soon_queue_size": stats.run_sync_soon_queue_size,
            "task_steps": stats.task_steps,
            "timing": timing is not None,
        },
        "kernel": _kernel_record(runner),
    }
    _site_memo.clear()  # ids may be reused once the objects go
    return snapshot
