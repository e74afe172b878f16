"""Static file serving benchmark: throughput, CPU per GB, and head-of-line blocking.

    python -m benchmarks.serving                 # 3 rounds, full sizes
    python -m benchmarks.serving --quick         # 1 round, short runs (a smoke test)
    python -m benchmarks.serving --out DIR       # default: benchmarks/results/

Writes ``serving.md``, ``serving.json`` and ``serving.png`` (not the main suite's latest.*).

Scenarios (loopback only, every run bounded in time):

- ``cached``: 50 keep-alive clients download files of 16 KiB to 8 MiB (a shared set, read
  once beforehand so it is in the page cache), again and again for ``duration`` seconds.
- ``cold``: 50 clients each download their own set of those sizes once, after every file
  was evicted from the page cache (``posix_fadvise(DONTNEED)`` after ``fsync``).
- ``hol``: 20 clients download cold 8 MiB files (over and over, for the whole run, while a
  driver thread evicts them every 20 ms) while a separate client sends one tiny (cached)
  request every 2 ms on its own connection and records the latency; the same probe is
  also run against an idle server (``hol-idle``) for the baseline.
- the floor, in every ``hol``/``hol-idle`` run and at the same time: the same probe against
  a trivial blocking responder process, and a process that sleeps 1 ms at a time and
  records how late it wakes. They show what the machine itself adds under that load.
  Before the runs, the device's cold read latency (an evicted 8 MiB file, a 64 KiB chunk)
  is measured too.

Each server variant (``benchmarks.serving_server``) runs in its own process; the driver
reads that process's CPU time (``/proc/PID/stat``: every thread, io-wq workers included)
and samples its threads (``/proc/PID/task``; io_uring's ``iou-wrk-*`` workers are counted
separately). Rounds alternate the variant order; tables show medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

KIB = 1024
MIB = 1024 * KIB
SIZES = (16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB)
SERVING_VARIANTS = (
    "nursery_io-zero-copy",
    "nursery_io-zero-copy@threads",
    "nursery_io-read-send",
    "example-zero-copy",
    "trio",
    "asyncio-sendfile",
    "uvloop-read-write",
)
HOL_VARIANTS = (
    "nursery_io-zero-copy",
    "nursery_io-zero-copy@threads",
    "nursery_io-read-send",
    "trio",
    "asyncio-sendfile",
    "uvloop-read-write",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_IO_WORKER = 0x10  # include/linux/sched.h: an io_uring worker thread


# --- files ------------------------------------------------------------------------------------


def _write(path: Path, size: int, block: bytes) -> None:
    with open(path, "wb") as f:
        for start in range(0, size, len(block)):
            f.write(block[: size - start])


def prepare(root: Path, quick: bool) -> dict[str, Any]:
    block = os.urandom(MIB)
    clients = 10 if quick else 50
    hol_clients, hol_files = (5, 2) if quick else (20, 3)
    layout: dict[str, Any] = {"cached": [], "cold": [], "hol": [], "tiny": "tiny.txt"}
    (root / "tiny.txt").write_bytes(b"x" * 100)
    for size in SIZES:
        for copy in range(2):
            name = f"c{size}_{copy}"
            _write(root / name, size, block)
            layout["cached"].append(name)
    for client in range(clients):
        names = []
        for size in SIZES:
            name = f"k{client}_{size}"
            _write(root / name, size, block)
            names.append(name)
        layout["cold"].append(names[::-1] if client % 2 else names)
    for client in range(hol_clients):
        names = []
        for i in range(hol_files):
            name = f"h{client}_{i}"
            _write(root / name, 8 * MIB, block)
            names.append(name)
        layout["hol"].append(names)
    os.sync()
    return layout


def device_latency(root: Path, repeats: int = 7) -> dict[str, Any]:
    """How long the device takes for what the cold scenarios read: a whole evicted 8 MiB
    file (1 MiB preads) and one 64 KiB chunk of it. Medians and maxima in ms."""
    path = root / "device.bin"
    _write(path, 8 * MIB, os.urandom(MIB))
    fd = os.open(path, os.O_RDONLY)
    whole, chunk = [], []
    try:
        os.fsync(fd)
        for i in range(repeats):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            position = 0
            while data := os.pread(fd, MIB, position):
                position += len(data)
            whole.append(time.perf_counter() - start)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            offset = (i * 37 % 120) * 64 * KIB
            start = time.perf_counter()
            os.pread(fd, 64 * KIB, offset)
            chunk.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return {
        "read_8mib_ms": statistics.median(whole) * 1e3,
        "read_8mib_max_ms": max(whole) * 1e3,
        "read_64kib_ms": statistics.median(chunk) * 1e3,
        "read_64kib_max_ms": max(chunk) * 1e3,
    }


def evict(root: Path) -> None:
    for entry in os.scandir(root):
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class Evictor:
    """Evicts ``names`` from the page cache every ``interval`` seconds, in a thread, until
    stopped. Pages a transfer still holds (in a pipe, in flight) are skipped by the kernel."""

    def __init__(self, root: Path, names: list[str], interval: float = 0.02) -> None:
        self.fds = [os.open(root / name, os.O_RDONLY) for name in names]
        self.interval = interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for fd in self.fds:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            self.rounds += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for fd in self.fds:
            os.close(fd)


def warm(root: Path, names: list[str]) -> None:
    for name in [*names, "tiny.txt"]:
        (root / name).read_bytes()


# --- one run ----------------------------------------------------------------------------------


class ServerProcess:
    def __init__(self, variant: str, root: Path) -> None:
        name, _, options = variant.partition("@")
        env = dict(os.environ)
        for option in filter(None, options.split("+")):
            # "@threads": the thread engine; "@NAME=VALUE": an environment variable.
            key, _, value = option.partition("=")
            if option == "threads":
                env["NURSERY_IO_URING"] = "0"
            else:
                env[key] = value
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serving_server", name, str(root)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"{variant} server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.peak_threads = 0
        self.peak_io_workers = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads

    def _sample(self) -> None:
        # io-wq workers are told apart by PF_IO_WORKER in the task flags, not by name: a
        # new worker is named after the process ("python") until it renames itself.
        try:
            tasks = os.listdir(f"/proc/{self.proc.pid}/task")
        except OSError:
            return
        workers = threads = 0
        for tid in tasks:
            try:
                stat = Path(f"/proc/{self.proc.pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            flags = int(stat.rsplit(")", 1)[1].split()[6])
            if flags & PF_IO_WORKER:
                workers += 1
            else:
                threads += 1
        self.peak_io_workers = max(self.peak_io_workers, workers)
        self.peak_threads = max(self.peak_threads, threads)

    def _sample_loop(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def start_sampling(self) -> None:
        self._sample()
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._sample()
        self._stop.set()
        self._sampler.join()

    def stop(self) -> dict[str, Any]:
        """Ask the server for its ``stats`` line (SIGTERM), then make sure it is gone."""
        stats: dict[str, Any] = {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                out = ""
            for line in out.splitlines():
                if line.startswith("stats "):
                    stats = json.loads(line[6:])
        self.proc.kill()
        self.proc.wait()
        return stats


def client(mode: str, port: int, params: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serving_client", mode, str(port), json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
    )


def result_of(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "client timed out"}
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def run_once(
    scenario: str, variant: str, root: Path, layout: dict[str, Any], duration: float
) -> dict[str, Any]:
    if scenario in ("cold", "hol"):
        evict(root)
        warm(root, [])  # the tiny file only
    responder = ServerProcess("responder", root) if scenario.startswith("hol") else None
    try:
        server = ServerProcess(variant, root)
    except BaseException:
        if responder is not None:
            responder.stop()
        raise
    try:
        server.start_sampling()
        cpu0 = server.cpu_seconds()
        report: dict[str, Any] = {"scenario": scenario, "variant": variant}
        if scenario == "cached":
            lists = [layout["cached"][i % 3 :] + layout["cached"][: i % 3] for i in range(50)]
            params = {"lists": lists, "duration": duration, "loop": True}
            report |= result_of(client("download", server.port, params), duration + 30)
        elif scenario == "cold":
            params = {"lists": layout["cold"], "duration": duration * 10, "loop": False}
            report |= result_of(client("download", server.port, params), duration * 10 + 30)
        else:  # hol, hol-idle
            down = None
            probe_time = duration
            if scenario == "hol":
                # The downloads go on for the whole run, again and again over the same
                # files; an evictor keeps dropping them from the page cache meanwhile, so
                # the reads keep going to the device without gigabytes of test files.
                params = {"lists": layout["hol"], "duration": duration, "loop": True}
                down = client("download", server.port, params)
                evictor = Evictor(root, [n for names in layout["hol"] for n in names])
                time.sleep(0.2)  # let the downloads start
                probe_time = duration - 0.4
            params = {"name": layout["tiny"], "duration": probe_time}
            # The floor, measured at the same time under the same load: the same probe
            # against a trivial responder, and a process that only sleeps 1 ms at a time.
            probes = [
                client("probe", server.port, params),
                client("probe", responder.port, params),
                client("sleep", 0, params),
            ]
            for key, proc in zip(("probe", "floor_probe", "sleep"), probes, strict=True):
                report[key] = result_of(proc, duration + 30)
            if down is not None:
                report |= result_of(down, duration + 30)
                evictor.stop()
                report["evictions"] = evictor.rounds
        report["server_cpu"] = server.cpu_seconds() - cpu0
        server.stop_sampling()
        report["threads"] = server.peak_threads
        report["io_workers"] = server.peak_io_workers
        report["server_stats"] = server.stop()
        return report
    finally:
        server.stop()
        if responder is not None:
            responder.stop()


# --- report -----------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: Any) -> float | None:
    values = [v for r in runs if "error" not in r and (v := key(r)) is not None]
    return statistics.median(values) if values else None


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["scenario"], r["variant"]), []).append(r)
    for (scenario, variant), runs in by.items():
        row: dict[str, Any] = {
            "runs": len(runs),
            "errors": [r["error"] for r in runs if "error" in r],
            "threads": max((r.get("threads", 0) for r in runs), default=0),
            "io_workers": max((r.get("io_workers", 0) for r in runs), default=0),
        }
        if scenario in ("cached", "cold", "hol"):
            row["gbps"] = _median(runs, lambda r: r["bytes"] / r["seconds"] / 1e9)
            row["cpu_per_gb"] = _median(
                runs, lambda r: r["server_cpu"] / (r["bytes"] / 1e9) if r["bytes"] else None
            )
            row["requests"] = _median(runs, lambda r: r["requests"])
        if scenario in ("hol", "hol-idle"):
            row["p50_ms"] = _median(runs, lambda r: r["probe"].get("p50", 0) * 1e3)
            row["p99_ms"] = _median(runs, lambda r: r["probe"].get("p99", 0) * 1e3)
            row["max_ms"] = _median(runs, lambda r: r["probe"].get("max", 0) * 1e3)
            row["floor_p50_ms"] = _median(runs, lambda r: _ms(r, "floor_probe", "p50"))
            row["floor_p99_ms"] = _median(runs, lambda r: _ms(r, "floor_probe", "p99"))
            row["sleep_p99_ms"] = _median(runs, lambda r: _ms(r, "sleep", "p99"))
            # Per run: how many times the floor's p99 the server's p99 was.
            row["over_floor"] = _median(
                runs,
                lambda r: (
                    r["probe"]["p99"] / r["floor_probe"]["p99"]
                    if "p99" in r["probe"] and r.get("floor_probe", {}).get("p99")
                    else None
                ),
            )
            row["stall_p99_ms"] = _median(
                runs, lambda r: r.get("server_stats", {}).get("sendfile_p99_ms")
            )
            row["stall_max_ms"] = _median(
                runs, lambda r: r.get("server_stats", {}).get("sendfile_max_ms")
            )
        if scenario in ("cached", "cold", "hol"):
            row["inline_sendfiles"] = _median(
                runs, lambda r: r.get("server_stats", {}).get("inline_sendfiles")
            )
            row["ring_ops"] = _median(
                runs, lambda r: r.get("server_stats", {}).get("ops_by_engine", {}).get("io_uring")
            )
        table.setdefault(scenario, {})[variant] = row
    return table


def _ms(run: dict[str, Any], key: str, field: str) -> float | None:
    value = run.get(key, {}).get(field)
    return None if value is None else value * 1e3


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def targets(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = []
    cached = table.get("cached", {})
    ours_row = cached.get("nursery_io-zero-copy", {})
    ours = ours_row.get("gbps")

    def check(text: str, ok: bool | None, measured: str) -> None:
        state = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"{state}  {text}: {measured}")

    def note(text: str) -> None:
        lines.append(f"      {text}")

    for peer, factor in (("trio", 2.0), ("asyncio-sendfile", 1.0), ("uvloop-read-write", 1.0)):
        theirs = cached.get(peer, {}).get("gbps")
        ratio = ours / theirs if ours and theirs else None
        check(
            f"cached throughput >= {factor:g}x {peer}",
            None if ratio is None else ratio >= factor,
            f"{_fmt(ratio)}x",
        )
        our_cpu, their_cpu = ours_row.get("cpu_per_gb"), cached.get(peer, {}).get("cpu_per_gb")
        if our_cpu and their_cpu:
            note(f"{peer} spends {_fmt(their_cpu / our_cpu)}x nursery_io's CPU per GB")
    hol = table.get("hol", {})
    idle = table.get("hol-idle", {})
    ours_hol = hol.get("nursery_io-zero-copy", {})
    ours_p99 = ours_hol.get("p99_ms")
    ours_idle = idle.get("nursery_io-zero-copy", {}).get("p99_ms")
    asyncio_p99 = hol.get("asyncio-sendfile", {}).get("p99_ms")
    floor_p99 = ours_hol.get("floor_p99_ms")
    ratio = asyncio_p99 / ours_p99 if ours_p99 and asyncio_p99 else None
    check(
        "cold downloads: tiny-request p99 >= 10x better than asyncio sock_sendfile",
        None if ratio is None else ratio >= 10,
        f"{_fmt(ratio, 1)}x ({_fmt(ours_p99)} ms vs {_fmt(asyncio_p99)} ms)",
    )
    if asyncio_p99 and floor_p99:
        note(
            f"the most any server could reach here: {_fmt(asyncio_p99 / floor_p99, 1)}x"
            f" (asyncio's p99 over the floor's, {_fmt(floor_p99)} ms)"
        )
    growth = ours_p99 / ours_idle if ours_p99 and ours_idle else None
    check(
        "nursery_io p99 under cold downloads within 2x of its idle p99",
        None if growth is None else growth <= 2,
        f"{_fmt(growth)}x ({_fmt(ours_p99)} ms vs {_fmt(ours_idle)} ms idle)",
    )
    floor_idle = idle.get("nursery_io-zero-copy", {}).get("floor_p99_ms")
    if floor_p99 and floor_idle:
        note(
            f"the floor itself (a trivial responder) went from {_fmt(floor_idle)} ms idle to"
            f" {_fmt(floor_p99)} ms under the same load: {_fmt(floor_p99 / floor_idle)}x"
        )
    # The same target with the machine's share taken out: p99 over the floor's p99 at the
    # same moment, under load and idle. Even idle, a Python server answering HTTP takes a
    # few times the canned answer's p99; the load may at most double that factor.
    over = ours_hol.get("over_floor")
    over_idle = idle.get("nursery_io-zero-copy", {}).get("over_floor")
    growth = over / over_idle if over and over_idle else None
    check(
        "proposed: nursery_io p99 over the floor's (same moment) under cold downloads"
        " within 2x of the same ratio idle",
        None if growth is None else growth <= 2,
        f"{_fmt(growth)}x ({_fmt(over)}x the floor under load, {_fmt(over_idle)}x idle)",
    )
    threads = max(
        (row.get("threads", 0) for scenario in table.values() for v, row in scenario.items()
         if v == "nursery_io-zero-copy"),
        default=0,
    )  # fmt: skip
    check("nursery_io-zero-copy: 1 thread in the process (io-wq reported apart)", threads == 1,
          f"{threads}")  # fmt: skip
    return lines


def markdown(table: dict[str, dict[str, dict[str, Any]]], meta: dict[str, Any]) -> str:
    out = [
        "# Static file serving",
        "",
        f"{meta['date']} · Python {meta['python']} · {meta['platform']} · {meta['cpus']} CPUs ·"
        f" {meta['rounds']} round(s), {'quick' if meta['quick'] else 'full'} sizes"
        f" · {meta.get('minutes', 0):.1f} minutes",
        "",
        "Command: `python -m benchmarks.serving"
        + (" --quick" if meta["quick"] else "")
        + f" --rounds {meta['rounds']}`. Medians of the runs. `CPU s/GB`: CPU seconds of the"
        " whole server process (every thread, io-wq workers included) per GB of bodies sent."
        " `threads`: peak threads of the server process without io_uring's `iou-wrk` workers,"
        " which are counted in `io-wq`. `inline`: nursery_io's `sendfile` calls on the loop"
        " thread for cached data (`inline_sendfiles`), `ring ops`: its io_uring operations.",
        "",
    ]
    device = meta.get("device")
    if device:
        out += [
            "## The device",
            "",
            f"Reading an evicted 8 MiB file (1 MiB preads): {_fmt(device['read_8mib_ms'])} ms"
            f" (max {_fmt(device['read_8mib_max_ms'])} ms); one evicted 64 KiB chunk:"
            f" {_fmt(device['read_64kib_ms'])} ms (max {_fmt(device['read_64kib_max_ms'])} ms)."
            " A loop that calls `sendfile` on cold data waits that long, per call, with"
            " every other connection.",
            "",
        ]
    titles = {
        "cached": "Cached files: 50 clients, 16 KiB-8 MiB, keep-alive, for a fixed time",
        "cold": "Cold files: 50 clients, each its own 16 KiB-8 MiB files once, evicted first",
        "hol": "Head-of-line: tiny requests while 20 clients download cold 8 MiB files",
        "hol-idle": "Baseline: the same tiny requests to an idle server",
    }
    for scenario in ("cached", "cold", "hol", "hol-idle"):
        rows = table.get(scenario)
        if not rows:
            continue
        out += [f"## {titles[scenario]}", ""]
        if scenario == "hol":
            out += [
                "The 20 downloads loop over their files for the whole run while the driver"
                " evicts those files every 20 ms, so reads keep going to the device. `floor`:"
                " the same probe, at the same time, against a trivial responder process"
                " (blocking socket, canned answer); `sleep`: how late a process that only"
                " sleeps 1 ms wakes up (p99). Both show what the machine itself adds under"
                " this load (2 CPUs shared by the server, its io-wq workers, the clients and"
                " the probes). `x floor`: the server's p99 over the floor's, run by run."
                " `stall`: for asyncio, how long its `os.sendfile` calls held the loop"
                " (p99 / max).",
                "",
            ]
        if scenario in ("cached", "cold"):
            out += ["| server | GB/s | CPU s/GB | requests | threads | io-wq | inline | ring ops"
                    " | errors |",
                    "|---|--:|--:|--:|--:|--:|--:|--:|---|"]  # fmt: skip
            for variant, row in rows.items():
                out.append(
                    f"| {variant} | {_fmt(row['gbps'])} | {_fmt(row['cpu_per_gb'])} |"
                    f" {_fmt(row['requests'], 0)} | {row['threads']} | {row['io_workers']} |"
                    f" {_fmt(row.get('inline_sendfiles'), 0)} | {_fmt(row.get('ring_ops'), 0)} |"
                    f" {'; '.join(row['errors'])[:80]} |"
                )
        else:
            out += ["| server | p50 ms | p99 ms | max ms | floor p99 | x floor | sleep p99 |"
                    " stall ms | download GB/s | threads | io-wq |",
                    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
            for variant, row in rows.items():
                stall = (
                    f"{_fmt(row['stall_p99_ms'])} / {_fmt(row['stall_max_ms'])}"
                    if row.get("stall_p99_ms") is not None
                    else "-"
                )
                out.append(
                    f"| {variant} | {_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} |"
                    f" {_fmt(row['max_ms'])} | {_fmt(row.get('floor_p99_ms'))} |"
                    f" {_fmt(row.get('over_floor'), 1)} | {_fmt(row.get('sleep_p99_ms'))} |"
                    f" {stall} | {_fmt(row.get('gbps'))} | {row['threads']} |"
                    f" {row['io_workers']} |"
                )
        out.append("")
    out += ["## Targets", "", "```", *targets(table), "```", ""]
    return "\n".join(out)


def chart(table: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, scenario, key, label in (
        (axes[0], "cached", "gbps", "cached: GB/s (higher is better)"),
        (axes[1], "cold", "gbps", "cold: GB/s (higher is better)"),
        (axes[2], "hol", "p99_ms", "tiny-request p99 ms (lower is better)"),
    ):
        rows = table.get(scenario, {})
        names = list(rows)
        values = [rows[n].get(key) or 0 for n in names]
        ax.barh(
            names, values, color=["#2a7" if n.startswith("nursery_io") else "#888" for n in names]
        )
        if scenario == "hol":
            floors = [rows[n].get("floor_p99_ms") or 0 for n in names]
            ax.scatter(floors, names, marker="|", s=300, color="#c33", zorder=3,
                       label="floor: trivial responder, same load")  # fmt: skip
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(label, fontsize=10)
        ax.invert_yaxis()
        if scenario == "hol" and any(values):
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Static file serving benchmark.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--only", default="cached,cold,hol", help="scenarios")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated server variants, in this order; VARIANT@threads runs on the"
        " thread engine, VARIANT@NAME=VALUE with that environment variable",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per run")
    parser.add_argument(
        "--from-json", default=None, help="re-render the report of a saved serving.json"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        write_report(saved["runs"], saved["meta"], Path(args.out))
        return
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (1.0 if args.quick else 3.0)
    scenarios = args.only.split(",")
    chosen = args.variants.split(",") if args.variants else None
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        root = Path(tmp)
        layout = prepare(root, args.quick)
        device = device_latency(root) if {"cold", "hol"} & set(scenarios) else None
        plan: list[tuple[str, tuple[str, ...]]] = []
        for scenario in scenarios:
            variants = HOL_VARIANTS if scenario == "hol" else SERVING_VARIANTS
            if chosen:
                # Listed variants run in the order given, extra "@..." spellings included.
                variants = tuple(chosen)
            plan.append((scenario, variants))
            if scenario == "hol":
                plan.append(("hol-idle", variants))
        for scenario, variants in plan:
            if scenario == "cached":
                warm(root, layout["cached"])
            for rnd in range(rounds):
                order = variants[rnd % len(variants) :] + variants[: rnd % len(variants)]
                for variant in order:
                    try:
                        report = run_once(scenario, variant, root, layout, duration)
                    except Exception as exc:
                        report = {"scenario": scenario, "variant": variant, "error": repr(exc)}
                    results.append(report)
                    shown = {k: v for k, v in report.items() if k not in ("scenario", "variant")}
                    print(f"[{scenario} {rnd + 1}/{rounds}] {variant}: {shown}", flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "quick": args.quick,
        "device": device,
        "minutes": (time.monotonic() - started) / 60,
    }
    write_report(results, meta, Path(args.out))


def write_report(results: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    table = summarize(results)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, meta)
    (out / "serving.md").write_text(text)
    (out / "serving.json").write_text(
        json.dumps({"meta": meta, "table": table, "runs": results}, indent=1)
    )
    try:
        chart(table, out / "serving.png")
    except ImportError:
        pass
    print(text)


if __name__ == "__main__":
    main()
