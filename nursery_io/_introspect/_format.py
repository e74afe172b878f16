"""Text rendering of a snapshot (``_snapshot.take_snapshot``): the task tree and summaries.

Works on the snapshot's data alone, so the in-process dump, ``python -m nursery_io ps``
and the console render the same thing the same way.

Siblings that are alike are folded into one line: leaf tasks in the same nursery with the
same state, the same kind of wait and the same user frames become ``x950 tasks ...``, so a
server with 10,000 connections gives a dump one can read.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from typing import Any

from ._snapshot import PACKAGE_DIR, short_path

__all__ = ["find_lock_cycles", "format_snapshot", "short_path", "shown_frames", "top_waits"]

Json = dict[str, Any]

_TRAPS_FILE = os.path.join("_core", "_traps.py")


def _is_internal(frame: list[Any]) -> bool:
    return str(frame[0]).startswith(PACKAGE_DIR)


def shown_frames(task: Json, max_frames: int) -> list[list[Any]]:
    """The task's innermost frames outside nursery_io (innermost first); if it has none
    (a system task), its innermost frame."""
    frames: list[list[Any]] = task["frames"]
    user = [f for f in frames if not _is_internal(f)]
    if not user:
        # A task of nursery_io's own: its innermost frame above the trap it parks in.
        inner = [f for f in frames if not str(f[0]).endswith(_TRAPS_FILE)]
        user = (inner or frames)[-1:]
    return list(reversed(user))[:max_frames]


def _frame_text(frame: list[Any]) -> str:
    return f"{short_path(frame[0])}:{frame[1]} in {frame[2]}"


def _seconds(value: float) -> str:
    if value == -math.inf:
        return "passed"
    if abs(value) < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.1f}s"


def _scope_text(scope: Json) -> str:
    parts = []
    if scope["deadline_in"] is not None:
        deadline_in = scope["deadline_in"]
        parts.append(
            "deadline passed" if deadline_in <= 0 else f"deadline in {_seconds(deadline_in)}"
        )
    if scope["shield"]:
        parts.append("shielded")
    if scope["cancel_called"]:
        parts.append("cancelled")
    return ", ".join(parts)


def _task_head(task: Json) -> str:
    state = task["state"]
    text = f"task {task['name']!r}"
    if task["system"]:
        text += " (system)"
    if state == "blocked" and task["wait"] is not None:
        return f"{text}  [blocked] {task['wait']['what']}"
    return f"{text}  [{state}]"


def _group_key(task: Json, max_frames: int) -> tuple[Any, ...]:
    wait = task["wait"]
    scopes = tuple(
        (s["deadline_in"] is not None, s["shield"], s["cancel_called"]) for s in task["scopes"]
    )
    return (
        task["state"],
        task["system"],
        wait["group"] if wait else None,
        tuple(tuple(f) for f in shown_frames(task, max_frames)),
        scopes,
    )


def _names_summary(tasks: list[Json]) -> str:
    names = Counter(t["name"] for t in tasks)
    if len(names) == 1:
        return repr(next(iter(names)))
    shown = ", ".join(repr(n) for n, _ in names.most_common(2))
    return f"{shown}, ... ({len(names)} names)"


def _group_detail(tasks: list[Json]) -> str:
    fds = sorted(t["wait"]["fd"] for t in tasks if t["wait"] and t["wait"].get("fd") is not None)
    if fds:
        return f" (fds {fds[0]}..{fds[-1]})" if len(fds) > 1 else f" (fd {fds[0]})"
    return ""


class _Renderer:
    def __init__(self, snapshot: Json, compress_min: int, max_frames: int) -> None:
        self.tasks: dict[int, Json] = {t["id"]: t for t in snapshot["tasks"]}
        self.nurseries: dict[int, Json] = {n["id"]: n for n in snapshot["nurseries"]}
        self.compress_min = compress_min
        self.max_frames = max_frames
        self.lines: list[str] = []

    def task(self, task: Json, prefix: str, last: bool) -> None:
        branch, indent = ("└─ ", "   ") if last else ("├─ ", "│  ")
        self.lines.append(prefix + branch + _task_head(task))
        child_prefix = prefix + indent
        nurseries = [self.nurseries[n] for n in task["nurseries"] if n in self.nurseries]
        detail_prefix = child_prefix + ("│    " if nurseries else "     ")
        self.details(task, detail_prefix)
        for index, nursery in enumerate(nurseries):
            self.nursery(nursery, child_prefix, index == len(nurseries) - 1)

    def details(self, task: Json, prefix: str) -> None:
        for frame in shown_frames(task, self.max_frames):
            self.lines.append(f"{prefix}at {_frame_text(frame)}")
        for scope in task["scopes"]:
            text = _scope_text(scope)
            if text:
                self.lines.append(f"{prefix}cancel scope: {text}")

    def nursery(self, nursery: Json, prefix: str, last: bool) -> None:
        branch, indent = ("└─ ", "   ") if last else ("├─ ", "│  ")
        children = [self.tasks[t] for t in nursery["children"] if t in self.tasks]
        head = f"nursery ({len(children)} task{'s' if len(children) != 1 else ''})"
        scope = _scope_text(nursery["scope"])
        if scope:
            head += f"  [{scope}]"
        self.lines.append(prefix + branch + head)
        child_prefix = prefix + indent
        # Leaf tasks fold into groups; tasks with nurseries of their own are shown whole.
        groups: dict[tuple[Any, ...], list[Json]] = {}
        items: list[tuple[str, Any]] = []
        for child in children:
            if child["nurseries"]:
                items.append(("task", child))
                continue
            key = _group_key(child, self.max_frames)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
                items.append(("group", group))
            group.append(child)
        rows: list[tuple[str, Any]] = []
        for kind, item in items:
            if kind == "group" and len(item) < self.compress_min:
                rows.extend(("task", t) for t in item)
            else:
                rows.append((kind, item))
        for index, (kind, item) in enumerate(rows):
            is_last = index == len(rows) - 1
            if kind == "task":
                self.task(item, child_prefix, is_last)
            else:
                self.group(item, child_prefix, is_last)

    def group(self, tasks: list[Json], prefix: str, last: bool) -> None:
        branch, indent = ("└─ ", "   ") if last else ("├─ ", "│  ")
        first = tasks[0]
        wait = first["wait"]
        state = first["state"]
        what = f"[blocked] {wait['group']}" if wait is not None else f"[{state}]"
        self.lines.append(
            f"{prefix}{branch}x{len(tasks)} tasks {_names_summary(tasks)}  {what}"
            f"{_group_detail(tasks)}"
        )
        self.details(first, prefix + indent + "     ")


def find_lock_cycles(snapshot: Json) -> list[list[Json]]:
    """Cycles of tasks each waiting for a lock held by the next one: deadlocks."""
    tasks = {t["id"]: t for t in snapshot["tasks"]}
    waits_for = {
        t["id"]: t["wait"]["owner"]
        for t in snapshot["tasks"]
        if t["wait"] is not None and t["wait"].get("owner") in tasks
    }
    cycles: list[list[Json]] = []
    seen: set[int] = set()
    for start in waits_for:
        path: list[int] = []
        node: int | None = start
        while node is not None and node not in seen and node not in path:
            path.append(node)
            node = waits_for.get(node)
        if node is not None and node in path:
            cycles.append([tasks[n] for n in path[path.index(node) :]])
        seen.update(path)
    return cycles


def top_waits(snapshot: Json, limit: int = 10) -> list[tuple[str, int]]:
    """The most common wait reasons, with how many tasks wait on each."""
    counts = Counter(
        t["wait"]["group"] if t["wait"] else f"[{t['state']}]" for t in snapshot["tasks"]
    )
    return counts.most_common(limit)


def _kernel_lines(snapshot: Json) -> list[str]:
    kernel = snapshot["kernel"]
    run = snapshot["run"]
    lines = [
        f"kernel: {kernel['fds_watched']} fds watched, {kernel['kernel_polls']} polls, "
        f"{run['task_steps']} task steps, {run['run_sync_soon_queue_size']} callbacks queued"
    ]
    engine = kernel["engine"]
    if engine is not None:
        in_flight = engine["in_flight"]
        text = (
            f"file engine: {engine['name']}, in flight: io_uring {in_flight['io_uring']}, "
            f"threads {in_flight['threads']}; io_uring_enter calls {engine['submit_syscalls']}"
        )
        if engine["inline_hit_rate"] is not None:
            text += f"; inline hit rate {engine['inline_hit_rate']:.0%}"
        lines.append(text)
    workers = kernel["worker_threads"]
    lines.append(
        f"worker threads: {workers['busy']} busy, {workers['idle']} idle"
        + (f"; io-wq workers: {kernel['iowq_workers']}" if kernel["iowq_workers"] else "")
    )
    return lines


def format_snapshot(
    snapshot: Json,
    *,
    compress_min: int = 3,
    max_frames: int = 3,
    summary: bool = True,
) -> str:
    """The task tree of ``snapshot`` as text (see the module docstring).

    ``compress_min``: the smallest group of alike sibling tasks folded into one line
    (0 or a huge number: never fold). ``max_frames``: user frames shown per task.
    """
    tasks = snapshot["tasks"]
    states = Counter(t["state"] for t in tasks)
    lines = [
        f"nursery_io task tree, pid {snapshot['pid']}: {len(tasks)} tasks "
        f"({states['running']} running, {states['runnable']} runnable, "
        f"{states['blocked']} blocked)"
    ]
    renderer = _Renderer(snapshot, compress_min if compress_min > 0 else sys.maxsize, max_frames)
    root = renderer.tasks.get(snapshot["root"]) if snapshot["root"] is not None else None
    if root is not None:
        renderer.task(root, "", True)
        # "└─ " of the root adds nothing: drop that column.
        lines.extend(line[3:] for line in renderer.lines)
    else:
        lines.append("(no root task)")
    if summary:
        for cycle in find_lock_cycles(snapshot):
            chain = " -> ".join(repr(t["name"]) for t in [*cycle, cycle[0]])
            lines.append(f"DEADLOCK: each task waits for a lock held by the next: {chain}")
        lines.append("top waits: " + "; ".join(f"{n}x {w}" for w, n in top_waits(snapshot, 5)))
        lines.extend(_kernel_lines(snapshot))
    return "\n".join(lines) + "\n"
