"""``python -m nursery_io ps | pstree | console``: look at a running program from outside.

The program must serve the console endpoint (``NURSERY_IO_CONSOLE=1``, or
``nursery_io.lowlevel.start_console_server()``). ``ps`` and ``pstree`` print one snapshot
(as text, or ``--json``); ``console`` is a full-screen view refreshing in place, like
``top`` (it needs the ``rich`` package: ``pip install nursery_io[console]``).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from typing import Any

from ._client import ConsoleConnection, ConsoleError
from ._format import format_snapshot, short_path, shown_frames, top_waits

__all__ = ["console_main", "ps_main", "pstree_main"]

Json = dict[str, Any]

SORT_KEYS = ("busy", "idle", "steps", "delay", "name", "state")


def _where(task: Json) -> str:
    frames = shown_frames(task, 1)
    return f"{short_path(frames[0][0])}:{frames[0][1]}" if frames else ""


def _clip(text: str, width: int) -> str:
    # Task names are often dotted paths: their end says more than their start.
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _wait_text(task: Json) -> str:
    return task["wait"]["what"] if task["wait"] else ""


def sort_tasks(tasks: list[Json], key: str) -> list[Json]:
    """Tasks ordered for display: busiest (or most idle, ...) first."""

    def timing(task: Json, field: str) -> float:
        return float(task.get("timing", {}).get(field, 0.0))

    if key == "name":
        return sorted(tasks, key=lambda t: (t["name"], t["id"]))
    if key == "state":
        order = {"running": 0, "runnable": 1, "blocked": 2}
        return sorted(tasks, key=lambda t: (order.get(t["state"], 3), t["name"]))
    field = {
        "busy": "busy_s",
        "idle": "idle_s",
        "steps": "steps",
        "delay": "sched_delay_max_s",
    }[key]
    return sorted(tasks, key=lambda t: (-timing(t, field), t["name"]))


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m nursery_io {prog}", description=description)
    parser.add_argument("target", help="process id, or the path of its console socket")
    return parser


def _connect(target: str) -> ConsoleConnection:
    try:
        return ConsoleConnection(target)
    except (OSError, ConsoleError) as exc:
        raise SystemExit(f"nursery_io: can't connect to {target}: {exc}") from None


def _fetch(target: str, sample: float) -> Json:
    with _connect(target) as conn:
        try:
            if sample > 0:
                conn.snapshot(timing=True)
                time.sleep(sample)
                return conn.snapshot(timing=True)
            return conn.snapshot()
        except (OSError, ConsoleError) as exc:
            raise SystemExit(f"nursery_io: {target}: {exc}") from None


def format_ps(snapshot: Json, sort: str = "state") -> str:
    """One line per task: state, name, what it waits on, where (and timing if measured)."""
    timed = bool(snapshot["run"].get("timing"))
    header = f"{'STATE':<9} {'NAME':<32} "
    if timed:
        header += f"{'STEPS':>7} {'BUSY':>8} {'IDLE':>8} {'MAXDELAY':>9} "
    header += f"{'WHERE':<28} WAITING ON"
    lines = [header]
    for task in sort_tasks(snapshot["tasks"], sort):
        line = f"{task['state']:<9} {_clip(task['name'], 32):<32} "
        if timed:
            timing = task.get("timing", {})
            line += (
                f"{timing.get('steps', 0):>7} {timing.get('busy_s', 0.0):>7.3f}s "
                f"{timing.get('idle_s', 0.0):>7.1f}s "
                f"{timing.get('sched_delay_max_s', 0.0) * 1000:>7.2f}ms "
            )
        line += f"{_clip(_where(task), 28):<28} {_wait_text(task)}"
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def ps_main(argv: list[str]) -> int:
    parser = _parser("ps", "List the tasks of a running nursery_io program, once.")
    parser.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    parser.add_argument(
        "--sample",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="measure busy/idle time and scheduling delay for this long first",
    )
    parser.add_argument("--sort", choices=SORT_KEYS, default="state")
    args = parser.parse_args(argv)
    snapshot = _fetch(args.target, args.sample)
    if args.json:
        json.dump(snapshot, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_ps(snapshot, args.sort))
    return 0


def pstree_main(argv: list[str]) -> int:
    parser = _parser("pstree", "Print the task tree of a running nursery_io program, once.")
    parser.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    parser.add_argument(
        "--no-compress", action="store_true", help="show every task, even alike siblings"
    )
    args = parser.parse_args(argv)
    snapshot = _fetch(args.target, 0.0)
    if args.json:
        json.dump(snapshot, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_snapshot(snapshot, compress_min=0 if args.no_compress else 3))
    return 0


# ----- the console -----


def _rate(now: Json, before: Json | None, get: Any) -> float | None:
    if before is None:
        return None
    elapsed = now["wall_time"] - before["wall_time"]
    if elapsed <= 0:
        return None
    try:
        return float(get(now) - get(before)) / elapsed  # type: ignore[no-any-return]
    except (KeyError, TypeError):
        return None


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def render_console(
    snapshot: Json, previous: Json | None, sort: str, show_tree: bool, height: int
) -> Any:
    """The console screen for one snapshot (``previous`` gives rates and busy %)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tasks = snapshot["tasks"]
    run = snapshot["run"]
    kernel = snapshot["kernel"]
    states = {s: sum(1 for t in tasks if t["state"] == s) for s in ("running", "runnable")}
    head = Text()
    head.append(f"nursery_io console  pid {snapshot['pid']}  ", style="bold")
    head.append(
        f"{len(tasks)} tasks ({states['running']} running, {states['runnable']} runnable, "
        f"{len(tasks) - states['running'] - states['runnable']} blocked)  "
        f"steps {_fmt_rate(_rate(snapshot, previous, lambda s: s['run']['task_steps']))}  "
        f"polls {_fmt_rate(_rate(snapshot, previous, lambda s: s['kernel']['kernel_polls']))}\n"
    )
    engine = kernel["engine"]
    if engine is not None:
        in_flight = engine["in_flight"]
        hit = engine["inline_hit_rate"]
        enter_rate = _rate(snapshot, previous, lambda s: s["kernel"]["engine"]["submit_syscalls"])
        head.append(
            f"file engine {engine['name']}: in flight io_uring {in_flight['io_uring']} "
            f"threads {in_flight['threads']}  ring depth {engine['ring_depth']}/"
            f"{engine['ring_entries']}  inline hits {'-' if hit is None else f'{hit:.0%}'}  "
            f"io_uring_enter {_fmt_rate(enter_rate)}\n"
        )
    workers = kernel["worker_threads"]
    head.append(
        f"worker threads {workers['busy']} busy / {workers['idle']} idle  "
        f"io-wq workers {kernel['iowq_workers'] or 0}  fds watched {kernel['fds_watched']}  "
        f"callbacks queued {run['run_sync_soon_queue_size']}"
    )
    before = {t["id"]: t for t in previous["tasks"]} if previous is not None else {}
    elapsed = snapshot["wall_time"] - previous["wall_time"] if previous is not None else 0.0
    table = Table(expand=True, box=None, header_style="bold reverse", collapse_padding=True)
    # (header, justify, min_width, max_width); NAME and WAITING ON take what is left.
    columns: tuple[tuple[str, str, int, int | None], ...] = (
        ("NAME", "left", 12, 28),
        ("STATE", "left", 8, 8),
        ("BUSY%", "right", 6, 6),
        ("BUSY", "right", 8, 9),
        ("IDLE", "right", 7, 8),
        ("STEPS", "right", 6, 9),
        ("DELAY avg/max", "right", 13, 15),
        ("WHERE", "left", 12, 22),
        ("WAITING ON", "left", 12, None),
    )
    for column, justify, min_width, max_width in columns:
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            min_width=min_width,
            max_width=max_width,
            ratio=1 if max_width is None else None,
        )
    rows = max(3, height // 2 - 6)
    for task in sort_tasks(tasks, sort)[:rows]:
        timing = task.get("timing", {})
        old = before.get(task["id"], {}).get("timing")
        busy_pct = ""
        if old is not None and elapsed > 0:
            busy_pct = f"{100 * (timing.get('busy_s', 0) - old.get('busy_s', 0)) / elapsed:.1f}"
        table.add_row(
            Text(_clip(task["name"], 28)),
            task["state"],
            busy_pct,
            f"{timing.get('busy_s', 0.0):.3f}s",
            f"{timing.get('idle_s', 0.0):.1f}s",
            str(timing.get("steps", 0)),
            f"{timing.get('sched_delay_avg_s', 0.0) * 1e3:.2f}/"
            f"{timing.get('sched_delay_max_s', 0.0) * 1e3:.2f}ms",
            Text(_clip(_where(task), 22)),
            Text(_wait_text(task)),
        )
    waits = Table(title="top wait reasons", box=None, title_justify="left", expand=True)
    waits.add_column("tasks", justify="right", min_width=6, max_width=8)
    waits.add_column("waiting on", no_wrap=True, overflow="ellipsis", ratio=1)
    for what, count in top_waits(snapshot, 6):
        waits.add_row(str(count), Text(what))
    fds = sorted(
        (t["wait"]["fd"], t["wait"]["kind"][3])  # r(eadable) / w(ritable)
        for t in tasks
        if t["wait"] and t["wait"]["kind"].startswith("fd_")
    )
    fd_text = Text(f"fds waited on ({len(fds)}): ", style="bold")
    fd_text.append(
        " ".join(f"{fd}{direction}" for fd, direction in fds[:40])
        + (" ..." if len(fds) > 40 else "")
        if fds
        else "none"
    )
    fd_text.no_wrap = True
    fd_text.overflow = "ellipsis"
    head.append(
        f"\nsort: {sort}   keys: b busy  i idle  s steps  d delay  n name  t tree  q quit",
        style="dim",
    )
    parts: list[Any] = [head, table, waits, fd_text]
    if show_tree:
        tree_lines = format_snapshot(snapshot, summary=False).splitlines()[1:]
        room = max(3, height - rows - 17)
        if len(tree_lines) > room:
            tree_lines = [*tree_lines[: room - 1], f"... ({len(tree_lines) - room + 1} more)"]
        parts.append(Text("task tree", style="bold"))
        tree = Text("\n".join(tree_lines))
        tree.no_wrap = True
        tree.overflow = "ellipsis"
        parts.append(tree)
    return Group(*parts)


class _RawInput:
    """Single-key input from a terminal without echo (a no-op when stdin isn't one)."""

    def __init__(self) -> None:
        self._fd = sys.stdin.fileno() if sys.stdin is not None else -1
        self._saved: Any = None

    def __enter__(self) -> _RawInput:
        if self._fd >= 0 and os.isatty(self._fd):
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def key(self, timeout: float) -> str | None:
        if self._fd < 0:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self._fd, 16)
        if not data:  # stdin closed: treat as quit
            return "q"
        return data.decode(errors="replace")[:1]


def console_main(argv: list[str]) -> int:
    parser = _parser("console", "A live, top-like view of a running nursery_io program.")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--sort", choices=SORT_KEYS, default="busy")
    parser.add_argument("--no-tree", action="store_true", help="don't show the task tree")
    args = parser.parse_args(argv)
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        sys.stderr.write(
            "nursery_io console needs the 'rich' package: pip install 'nursery_io[console]'\n"
        )
        return 2
    sort = args.sort
    show_tree = not args.no_tree
    keys = {"b": "busy", "i": "idle", "s": "steps", "d": "delay", "n": "name"}
    console = Console()
    conn = _connect(args.target)
    previous: Json | None = None
    try:
        with (
            _RawInput() as keyboard,
            Live(console=console, screen=True, auto_refresh=False, transient=True) as live,
        ):
            while True:
                try:
                    snapshot = conn.snapshot(timing=True)
                except (OSError, ConsoleError, ValueError):
                    break  # the program ended
                live.update(
                    render_console(snapshot, previous, sort, show_tree, console.size.height),
                    refresh=True,
                )
                previous = snapshot
                deadline = time.monotonic() + args.interval
                while (remaining := deadline - time.monotonic()) > 0:
                    key = keyboard.key(remaining)
                    if key is None:
                        continue
                    if key in ("q", "\x03"):
                        return 0
                    if key in keys:
                        sort = keys[key]
                    elif key == "t":
                        show_tree = not show_tree
                    break  # redraw now with the new setting
    except KeyboardInterrupt:
        return 0
    finally:
        conn.close()
    sys.stderr.write("nursery_io console: the program closed the connection\n")
    return 0
