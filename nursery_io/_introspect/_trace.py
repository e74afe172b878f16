"""A trace recorder: task steps, waits, wake-ups, cancellations and file ops, as a
Chrome / Perfetto trace (the JSON "trace event" format; open it in https://ui.perfetto.dev
or chrome://tracing).

Each task is a track ("thread") named after the task, showing its steps, the time it
spent runnable but waiting for its turn (scheduling delay) and the time it was blocked
(labelled with what it waited on). The loop's own track shows its kernel sleeps. File ops
appear as async slices per engine with their latency. Cancellations delivered to a task
are instant events.

Events go to a bounded buffer (``max_events``; the oldest are dropped first) and are
written out when the run ends (or by :meth:`TraceRecorder.write`). Overhead: two clock
reads and a tuple append per step, and one per wake-up; see docs/debugging.rst for
numbers.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import outcome

from .._abc_clock import Instrument
from .._core._context import GLOBAL_RUN_CONTEXT
from .._core._exceptions import Cancelled
from .._core._util import final

if TYPE_CHECKING:
    from .._core._runner import Runner
    from .._core._task import Task
    from .._kernel.ops import Op

__all__ = ["TraceRecorder"]

_now = time.perf_counter_ns

_LOOP_TID: Final = 1
_ENGINE_TIDS: Final = {"io_uring": 2, "threads": 3}
_FIRST_TASK_TID: Final = 10

# What a parked task waits on, by the qualified name of the abort function it parked with.
_WAIT_LABELS: Final = {
    "_OpWaiter.abort": "file op",
    "_wait.<locals>.abort": "fd",
    "ParkingLot.park.<locals>.abort": "lock/event",
    "MemoryReceiveChannel.receive.<locals>.abort": "channel receive",
    "MemorySendChannel.send.<locals>.abort": "channel send",
    "sleep_forever.<locals>.<lambda>": "sleep",
    "to_thread_run_sync.<locals>.abort": "thread",
    "Nursery._nested_child_finished.<locals>.aborted": "child tasks",
    "wait_all_tasks_blocked.<locals>.abort": "all tasks blocked",
}


@final
class TraceRecorder(Instrument):
    """Records a trace of the run it is installed in; written to ``path`` when the run
    ends (``path`` None: call :meth:`write` yourself).

    Install it like any instrument: ``nursery_io.run(main, instruments=[TraceRecorder(
    "trace.json")])``, or ``lowlevel.add_instrument`` mid-run, or set
    ``NURSERY_IO_TRACE=trace.json``. Tracing file ops starts the run's file engine.
    """

    def __init__(self, path: str | None = None, *, max_events: int = 1_000_000) -> None:
        self.path = path
        self.max_events = max_events
        self._events: deque[tuple[Any, ...]] = deque(maxlen=max_events)
        self._names: dict[int, str] = {}
        # task -> [tid, when its current state began (ns), what it waits on (or None)]
        self._tasks: dict[Task, list[Any]] = {}
        self._next_tid = _FIRST_TASK_TID
        self._origin = _now()
        self._step_started = 0
        self._io_wait_started = 0
        self._runner: Runner | None = None
        self._engine: Any = None
        self.dropped_events = 0

    # ----- bookkeeping -----

    def _attach(self) -> None:
        runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
        if runner is None or self._runner is runner:
            return
        self._runner = runner
        engine = runner.kernel.engine
        original = engine.submit

        def submit(op: Op, on_complete: Any) -> None:
            started = _now()

            def complete(done: Op) -> None:
                self._op_done(done, started)
                on_complete(done)

            original(op, complete)

        # An instance attribute shadows the method while tracing.
        setattr(engine, "submit", submit)  # noqa: B010
        self._engine = engine

    def _detach(self) -> None:
        engine = self._engine
        if engine is not None:
            self._engine = None
            engine.__dict__.pop("submit", None)

    def _track(self, task: Task) -> list[Any]:
        record = self._tasks.get(task)
        if record is None:
            tid = self._next_tid
            self._next_tid += 1
            self._names[tid] = task.name
            record = self._tasks[task] = [tid, 0, None]
        return record

    def _add(self, event: tuple[Any, ...]) -> None:
        events = self._events
        if len(events) == self.max_events:
            self.dropped_events += 1
        events.append(event)

    def _op_done(self, op: Op, started: int) -> None:
        now = _now()
        engine = op.engine or "threads"
        outcome_text = (
            "cancelled" if op.cancelled else f"error {op.error!r}" if op.error is not None else "ok"
        )
        args = {
            "fd": op.fd,
            "length": op.length,
            "offset": op.offset,
            "engine": engine,
            "latency_us": (now - started) / 1000,
            "outcome": outcome_text,
        }
        self._add(("op", op.name, started, now, engine, op.user_data, args))

    # ----- instrument hooks -----

    def before_run(self) -> None:
        self._attach()

    def after_run(self) -> None:
        self._detach()
        if self.path is not None:
            self.write(self.path)

    def task_spawned(self, task: Task) -> None:
        if self._runner is None:
            self._attach()
        tid = self._track(task)[0]
        self._add(("i", "spawned", _now(), tid, None))

    def task_scheduled(self, task: Task) -> None:
        if self._runner is None:  # added mid-run: no before_run
            self._attach()
        now = _now()
        record = self._track(task)
        waiting_on = record[2]
        if waiting_on is not None:
            self._add(("X", f"blocked: {waiting_on}", record[1], now, record[0], None))
            record[2] = None
            next_send = task._next_send
            if type(next_send) is outcome.Error and isinstance(next_send.error, Cancelled):
                self._add(("i", "cancelled", now, record[0], {"waiting on": waiting_on}))
        record[1] = now

    def before_task_step(self, task: Task) -> None:
        now = _now()
        record = self._track(task)
        if record[1]:
            self._add(("X", "runnable", record[1], now, record[0], None))
        self._step_started = now

    def after_task_step(self, task: Task) -> None:
        now = _now()
        record = self._tasks.get(task)
        if record is None:  # exited during the step
            return
        self._add(("X", "step", self._step_started, now, record[0], None))
        abort = task._abort_func
        if abort is not None:
            name = getattr(abort, "__qualname__", "?")
            record[2] = _WAIT_LABELS.get(name, name)
            record[1] = now
        else:
            record[1] = now  # runnable again (rescheduled at once)

    def task_exited(self, task: Task) -> None:
        now = _now()
        record = self._tasks.pop(task, None)
        if record is not None:
            self._add(("X", "step", self._step_started, now, record[0], None))
            self._add(("i", "exited", now, record[0], None))

    def before_io_wait(self, timeout: float) -> None:
        self._io_wait_started = _now()

    def after_io_wait(self, timeout: float) -> None:
        started = self._io_wait_started
        if started:
            self._add(("X", "kernel poll", started, _now(), _LOOP_TID, {"timeout": timeout}))

    # ----- output -----

    def trace_events(self) -> list[dict[str, Any]]:
        """The recorded events in Chrome's trace event format (a list of dicts)."""
        pid = os.getpid()
        origin = self._origin

        def us(ns: int) -> float:
            return (ns - origin) / 1000

        events: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": "nursery_io run"}},
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": _LOOP_TID,
                "args": {"name": "loop"},
            },
        ]
        for engine, tid in _ENGINE_TIDS.items():
            events.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": tid,
                    "args": {"name": f"file ops: {engine}"},
                }
            )
        for tid, name in self._names.items():
            events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            )
        for event in list(self._events):
            kind = event[0]
            if kind == "X":
                _, name, start, end, tid, args = event
                item: dict[str, Any] = {
                    "ph": "X",
                    "name": name,
                    "pid": pid,
                    "tid": tid,
                    "ts": us(start),
                    "dur": (end - start) / 1000,
                }
                if args:
                    item["args"] = args
                events.append(item)
            elif kind == "i":
                _, name, when, tid, args = event
                item = {"ph": "i", "s": "t", "name": name, "pid": pid, "tid": tid, "ts": us(when)}
                if args:
                    item["args"] = args
                events.append(item)
            elif kind == "op":
                _, name, start, end, engine, op_id, args = event
                tid = _ENGINE_TIDS.get(engine, _ENGINE_TIDS["threads"])
                common = {
                    "cat": "file op",
                    "name": name,
                    "pid": pid,
                    "tid": tid,
                    "id": f"{engine}-{op_id}",
                }
                events.append({**common, "ph": "b", "ts": us(start)})
                events.append({**common, "ph": "e", "ts": us(end), "args": args})
        return events

    def write(self, path: str | None = None) -> str:
        """Write the trace as JSON to ``path`` (default: the one given at creation)."""
        target = path if path is not None else self.path
        if target is None:
            raise ValueError("no path to write the trace to")
        document = {
            "traceEvents": self.trace_events(),
            "displayTimeUnit": "ms",
            "otherData": {"recorder": "nursery_io", "dropped_events": self.dropped_events},
        }
        with open(target, "w") as f:
            json.dump(document, f)
        return target
