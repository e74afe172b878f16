"""Shared machinery: schedule runs in fresh subprocesses, aggregate, check targets, report.

Every (workload, library) measurement is its own ``python -m benchmarks.worker`` process.
Within each round the libraries alternate (the starting library rotates from round to round),
so slow drifts of a shared, noisy machine hit every library alike; the numbers that count are
the ratios of medians within one invocation.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workloads import BASELINE, LIBRARIES, WORKLOADS, Target, load, supported_libraries

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# A library that is missing or hung once is not retried in later rounds of that workload.
_FINAL = ("unavailable", "timeout")


@dataclass
class Options:
    workloads: list[str]
    libraries: list[str]
    rounds: int
    quick: bool
    timeout: float
    out: Path


def run_worker(
    workload: str, library: str, params: dict[str, Any], workdir: Path, timeout: float
) -> dict[str, Any]:
    """One measurement in a fresh process; a hang is killed (with its children) and reported."""
    cmd = [sys.executable, "-m", "benchmarks.worker", workload, library]
    cmd += ["--params", json.dumps(params), "--workdir", str(workdir)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # A new session gives the worker its own process group: a timeout kills the TCP client too.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": "timeout", "error": f"killed after {timeout:g} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                report: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                break
            return report
    tail = " | ".join(stderr.strip().splitlines()[-3:])
    return {"status": "error", "error": f"worker exited {proc.returncode} without a report: {tail}"}


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("status") == "ok"]
    last = runs[-1]
    summary: dict[str, Any] = {"version": last.get("version", ""), "runs": runs}
    if not ok:
        summary["status"] = last["status"]
        summary["reason"] = last.get("reason") or last.get("error", "")
        return summary
    seconds = [r["seconds"] for r in ok]
    median = statistics.median(seconds)
    lib_threads = [r["library_threads"] for r in ok if r.get("library_threads") is not None]
    summary |= {
        "status": "ok",
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "n": len(ok),
        "failed": len(runs) - len(ok),
        "ops": ok[0]["ops"],
        "ops_per_s": ok[0]["ops"] / median if median > 0 else None,
        "threads": max(r["threads"] for r in ok),
        "library_threads": max(lib_threads) if lib_threads else None,
        "notes": ok[0].get("notes", ""),
    }
    return summary


# The one ratio every table and the chart show (and the README quotes): the speed-up of
# nursery_io over a library, that library's median time divided by nursery_io's. Above 1
# means nursery_io is faster; 0.5 means it took twice as long. (``vs_baseline`` in the JSON.)
RATIO_CONVENTION = (
    f"speed-up of {BASELINE} = that library's median time / {BASELINE}'s median time: "
    f"above 1 means {BASELINE} is faster, below 1 that it is slower"
)


def speedup(wl: dict[str, Any], lib: str, base: str = BASELINE) -> float | None:
    """``base``'s speed-up over ``lib`` in one workload: lib's median time / base's."""
    return _ratio(wl["libraries"], lib, base)


def _ratio(libs: dict[str, Any], name: str, other: str | None) -> float | None:
    if other is None or libs.get(name, {}).get("status") != "ok":
        return None
    if libs.get(other, {}).get("status") != "ok":
        return None
    return float(libs[name]["median_s"] / libs[other]["median_s"])


def check_target(target: Target, libs: dict[str, Any]) -> dict[str, Any]:
    """Verdict for one target: PASS / FAIL, or N/A when a side has no measurement."""
    row: dict[str, Any] = {"text": target.text, "measured": None, "verdict": "N/A"}
    base = libs.get(BASELINE, {})
    if base.get("status") != "ok":
        row["why"] = f"{BASELINE} {base.get('status', 'not run')}"
        return row
    if target.max_threads is not None:
        threads = base["threads"]
        row["measured"] = f"{threads} thread{'s' if threads != 1 else ''}"
        row["verdict"] = "PASS" if threads <= target.max_threads else "FAIL"
        return row
    assert target.peer is not None and target.min_speedup is not None
    speedup = _ratio(libs, target.peer, BASELINE)
    if speedup is None:
        row["why"] = f"{target.peer} {libs.get(target.peer, {}).get('status', 'not run')}"
        return row
    row["measured"] = f"{_fmt_ratio(speedup)}x (needs >= {target.min_speedup:g}x)"
    row["speedup"] = speedup
    row["verdict"] = "PASS" if speedup >= target.min_speedup else "FAIL"
    return row


def run_benchmarks(
    opts: Options, progress: Callable[[str], None] = lambda line: None
) -> dict[str, Any]:
    size = "quick" if opts.quick else "full"
    report: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "rounds": opts.rounds,
            "size": size,
            "timeout_s": opts.timeout,
            "baseline": BASELINE,
        },
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="nursery_io-bench-") as tmp:
        for name in opts.workloads:
            module = load(name)
            libraries = [lib for lib in supported_libraries(module) if lib in opts.libraries]
            params = dict(module.SIZES[size])
            workdir = Path(tmp) / name
            workdir.mkdir()
            if hasattr(module, "prepare"):
                params |= module.prepare(params, workdir)
            runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libraries}
            for rnd in range(opts.rounds):
                # ABC, BCA, CAB, ...: alternate libraries, rotate who goes first.
                shift = rnd % max(1, len(libraries))
                for lib in libraries[shift:] + libraries[:shift]:
                    if runs[lib] and runs[lib][-1]["status"] in _FINAL:
                        continue
                    result = run_worker(name, lib, params, workdir, opts.timeout)
                    runs[lib].append(result)
                    progress(f"[{name} {rnd + 1}/{opts.rounds}] {lib:<16} {_brief(result)}")
            libs = {lib: _summarize(r) for lib, r in runs.items() if r}
            for lib, summary in libs.items():
                summary["vs_baseline"] = _ratio(libs, lib, BASELINE)
                summary["vs_reference"] = _ratio(libs, lib, module.REFERENCE)
            report["workloads"][name] = {
                "title": module.TITLE,
                "unit": module.UNIT,
                "params": {k: v for k, v in params.items() if k not in ("path", "directory")},
                "reference": module.REFERENCE,
                "notes": getattr(module, "NOTES", {}),
                "libraries": libs,
                "targets": [check_target(t, libs) for t in module.TARGETS],
            }
    return report


def _brief(result: dict[str, Any]) -> str:
    if result["status"] == "ok":
        return f"{_fmt_time(result['seconds'])}  threads={result['threads']}"
    return f"{result['status']}: {result.get('reason') or result.get('error', '')}"


# ---------------------------------------------------------------- rendering


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{suffix}"
    return f"{rate:.3g}"


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    # Floors like the sync loop can be 1000x faster: keep two significant digits there.
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def target_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, wl in report["workloads"].items():
        for t in wl["targets"]:
            if t["measured"] is None:
                measured = f"not measured ({t.get('why', 'no data')})"
            else:
                measured = f"measured {t['measured']}"
            lines.append(f"{t['verdict']:<4}  {name}: {t['text']}: {measured}")
    return lines


def _row_cells(wl: dict[str, Any], lib: str) -> dict[str, str] | None:
    """One library's table cells (shared by the Markdown and the reStructuredText tables)."""
    s = wl["libraries"].get(lib)
    if s is None:
        return None
    notes = ", ".join(filter(None, [wl["notes"].get(lib, ""), s.get("notes", "")]))
    version = f"{s['version']}{'; ' + notes if notes else ''}"
    if s["status"] != "ok":
        reason = str(s.get("reason", ""))
        return {"library": lib, "median": s["status"], "range": reason, "version": version}
    spread = f"{s['n']} run{'s' if s['n'] != 1 else ''}"
    if s["n"] > 1:
        spread = f"{_fmt_time(s['min_s'])} - {_fmt_time(s['max_s'])} ({spread})"
    if s["failed"]:
        spread += f" ({s['failed']} failed)"
    threads = str(s["threads"])
    if s["library_threads"] is not None:
        threads += f" (lib: {s['library_threads']})"
    ratio = speedup(wl, lib)
    return {
        "library": lib,
        "median": _fmt_time(s["median_s"]),
        "rate": _fmt_rate(s["ops_per_s"]),
        "range": spread,
        "threads": threads,
        "speedup": "-" if ratio is None else f"{_fmt_ratio(ratio)}x",
        "version": version,
    }


def _header(meta: dict[str, Any]) -> str:
    return (
        f"{meta['date']} · Python {meta['python']} · {meta['platform']} · {meta['cpus']} CPUs"
        f" · {meta['rounds']} round(s), {meta['size']} sizes"
    )


def _explanation() -> str:
    return (
        "Each cell is the median of the runs (one fresh process per run). The last number "
        f"is the {RATIO_CONVENTION}. `threads` is the peak OS thread count of the process "
        "during the timed work."
    )


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    out = ["# nursery_io benchmarks", "", _header(meta), "", _explanation()]
    for name, wl in report["workloads"].items():
        params = ", ".join(f"{k}={v}" for k, v in wl["params"].items())
        unit = wl["unit"]
        out += ["", f"## {name}", "", f"{wl['title']} ({params})", ""]
        out.append(
            f"| library | median | {unit}/s | range (runs) | threads | {BASELINE} speed-up "
            "| version, notes |"
        )
        out.append("|---|--:|--:|---|--:|--:|---|")
        for lib in LIBRARIES:
            cells = _row_cells(wl, lib)
            if cells is None:
                continue
            if "rate" not in cells:
                reason = cells["range"].replace("|", "/")
                out.append(
                    f"| {lib} | **{cells['median']}** | | {reason} | | | {cells['version']} |"
                )
                continue
            out.append(
                f"| {lib} | {cells['median']} | {cells['rate']} | {cells['range']} "
                f"| {cells['threads']} | {cells['speedup']} | {cells['version']} |"
            )
    out += ["", "## Targets", "", "```", *target_lines(report), "```", ""]
    return "\n".join(out)


def _rst_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


def render_rst(report: dict[str, Any] | None) -> str:
    """The results as reStructuredText (``list-table`` per workload), for the docs; section
    titles use ``~`` so the page including it decides the levels above."""
    if report is None:
        return (
            ".. note::\n\n   No results yet: ``python -m benchmarks.run`` writes "
            "``benchmarks/results/latest.json``.\n"
        )
    meta = report["meta"]
    out = [
        _rst_escape(_header(meta)),
        "",
        "Each row is one library: the median of its runs, its throughput, the range of its "
        "runs, the peak number of OS threads, and the **" + _rst_escape(RATIO_CONVENTION) + "**.",
        "",
    ]
    for name, wl in report["workloads"].items():
        params = ", ".join(f"{k}={v}" for k, v in wl["params"].items())
        out += [name, "~" * len(name), "", _rst_escape(f"{wl['title']} ({params})."), ""]
        out += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 16 10 9 20 9 10 26",
            "",
            "   * - library",
            "     - median",
            f"     - {_rst_escape(wl['unit'])}/s",
            "     - range (runs)",
            "     - threads",
            f"     - {BASELINE} speed-up",
            "     - version, notes",
        ]
        for lib in LIBRARIES:
            cells = _row_cells(wl, lib)
            if cells is None:
                continue
            values = [
                cells["library"],
                cells["median"],
                cells.get("rate", ""),
                cells["range"],
                cells.get("threads", ""),
                cells.get("speedup", ""),
                cells["version"],
            ]
            out.append(f"   * - {_rst_escape(values[0]) or '..'}")
            out += [f"     - {_rst_escape(v)}" if v else "     -" for v in values[1:]]
        out.append("")
    out += [
        "Targets",
        "~~~~~~~",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 10 90",
        "",
    ]
    out += ["   * - verdict", "     - target (workload: target: measurement)"]
    for line in target_lines(report):
        verdict, text = line.split(None, 1)
        out += [f"   * - {verdict}", f"     - {_rst_escape(text)}"]
    out.append("")
    return "\n".join(out)


def _chart_baseline(wl: dict[str, Any]) -> str | None:
    """nursery_io when it was measured, else the reference peer, else the first result."""
    ok = [lib for lib in LIBRARIES if wl["libraries"].get(lib, {}).get("status") == "ok"]
    for candidate in (BASELINE, wl["reference"]):
        if candidate in ok:
            return candidate
    return ok[0] if ok else None


def chart_values(wl: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    """The chart's bars for one workload: the base library and every library's speed-up of
    the base over it (the tables' convention; the base is nursery_io when measured)."""
    base = _chart_baseline(wl)
    if base is None:
        return None, {}
    values = {}
    for lib in LIBRARIES:
        ratio = speedup(wl, lib, base)
        if ratio is not None:
            values[lib] = ratio
    return base, values


def write_chart(report: dict[str, Any], path: Path) -> None:
    """One small panel per workload: a horizontal bar per library showing nursery_io's
    speed-up over it, the same number as in the tables.

    Log scale with bars growing from the 1x line, so "2x faster" and "2x slower" are the
    same length on either side; the same scale on every panel, so panels compare. The figure
    is 800 pixels wide, the width of a documentation page, so its text needs no zooming.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    workloads = report["workloads"]
    names = list(workloads)
    panels = {name: chart_values(workloads[name]) for name in names}
    every = [v for _, values in panels.values() for v in values.values()] or [1.0]
    low, high = min(*every, 1.0) / 3, max(*every, 1.0) * 3  # room for the labels
    columns = 2
    rows = max(1, -(-len(names) // columns))
    tallest = max([len(values) for _, values in panels.values()] + [1])
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(8.0, 0.9 + rows * (0.5 + 0.2 * tallest)),
        squeeze=False,
        sharex=True,
    )
    colours = plt.get_cmap("tab10")
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        name = names[index]
        base, values = panels[name]
        libs = list(values)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        ax.axvline(1.0, color="black", linewidth=0.8)
        for y, lib in enumerate(libs):
            value = values[lib]
            colour = colours(LIBRARIES.index(lib) % 10)
            ax.barh(y, value - 1.0, left=1.0, height=0.7, color=colour)
            if lib == base:
                ax.plot([1.0], [y], marker="|", markersize=10, color="black")
            text = f"{value:.0f}x" if value >= 10 else f"{_fmt_ratio(value)}x"  # as in tables
            ax.annotate(
                text,
                (max(value, 1.0), y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(range(len(libs)), libs, fontsize=8)
        ax.set_ylim(len(libs) - 0.5, -0.5)  # first library on top
        title = name if base == BASELINE else f"{name} (vs {base}: {BASELINE} not measured)"
        ax.set_title(title, fontsize=9, loc="left")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8, labelbottom=True)
        ax.grid(axis="x", which="major", linewidth=0.4, alpha=0.5)
    meta = report["meta"]
    fig.suptitle(
        f"Speed-up of {BASELINE} over each library (its median time / {BASELINE}'s; "
        f">1x: {BASELINE} faster)\nmedian of {meta['rounds']} round(s), {meta['size']} sizes, "
        "log scale",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    # Write to a temporary name first so a crash never leaves a half-written result behind.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "latest.md", "json": out / "latest.json", "png": out / "latest.png"}
    markdown = render_markdown(report)
    _replace(paths["md"], lambda p: p.write_text(markdown))
    _replace(paths["json"], lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
    _replace(paths["png"], lambda p: write_chart(report, p))
    return paths


__all__ = [
    "RATIO_CONVENTION",
    "WORKLOADS",
    "Options",
    "render_markdown",
    "render_rst",
    "run_benchmarks",
    "speedup",
    "target_lines",
    "write_chart",
    "write_outputs",
]
