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


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    out = [
        "# nursery_io benchmarks",
        "",
        f"{meta['date']} · Python {meta['python']} · {meta['platform']} · {meta['cpus']} CPUs · "
        f"{meta['rounds']} round(s), {meta['size']} sizes",
        "",
        "Each cell is the median of the runs (one fresh process per run). "
        f"`vs {BASELINE}` and `vs ref` are that library's median time divided by "
        f"{BASELINE}'s and by the reference peer's: above 1.00 means slower. "
        "`threads` is the peak OS thread count of the process during the timed work.",
    ]
    for name, wl in report["workloads"].items():
        params = ", ".join(f"{k}={v}" for k, v in wl["params"].items())
        unit = wl["unit"]
        out += ["", f"## {name}", "", f"{wl['title']} ({params})", ""]
        out.append(
            f"| library | median | {unit}/s | runs (min-max) | threads | vs {BASELINE} "
            f"| vs ref ({wl['reference']}) | version, notes |"
        )
        out.append("|---|--:|--:|---|--:|--:|--:|---|")
        for lib in LIBRARIES:
            s = wl["libraries"].get(lib)
            if s is None:
                continue
            notes = ", ".join(filter(None, [wl["notes"].get(lib, ""), s.get("notes", "")]))
            version = f"{s['version']}{'; ' + notes if notes else ''}"
            if s["status"] != "ok":
                reason = str(s.get("reason", "")).replace("|", "/")
                out.append(f"| {lib} | **{s['status']}** | | {reason} | | | | {version} |")
                continue
            spread = str(s["n"])
            if s["n"] > 1:
                spread += f" ({_fmt_time(s['min_s'])}-{_fmt_time(s['max_s'])})"
            if s["failed"]:
                spread += f" ({s['failed']} failed)"
            threads = str(s["threads"])
            if s["library_threads"] is not None:
                threads += f" (lib: {s['library_threads']})"
            out.append(
                f"| {lib} | {_fmt_time(s['median_s'])} | {_fmt_rate(s['ops_per_s'])} | {spread} "
                f"| {threads} | {_fmt_ratio(s['vs_baseline'])} | {_fmt_ratio(s['vs_reference'])} "
                f"| {version} |"
            )
    out += ["", "## Targets", "", "```", *target_lines(report), "```", ""]
    return "\n".join(out)


def _chart_baseline(wl: dict[str, Any]) -> str | None:
    """nursery_io when it was measured, else the reference peer, else the first result."""
    ok = [lib for lib in LIBRARIES if wl["libraries"].get(lib, {}).get("status") == "ok"]
    for candidate in (BASELINE, wl["reference"]):
        if candidate in ok:
            return candidate
    return ok[0] if ok else None


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Grouped bars of each library's throughput relative to the baseline (= 1.0).

    Log scale, and bars grow from the 1.0 line, so "2x faster" and "2x slower" look alike.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    workloads = report["workloads"]
    names = list(workloads)
    present = [
        lib
        for lib in LIBRARIES
        if any(wl["libraries"].get(lib, {}).get("status") == "ok" for wl in workloads.values())
    ]
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(names) + 2), 5.5))
    width = 0.8 / max(1, len(present))
    labels: list[str] = []
    labelled: set[str] = set()
    values: list[float] = [1.0]
    for i, name in enumerate(names):
        wl = workloads[name]
        base = _chart_baseline(wl)
        labels.append(name if base in (BASELINE, None) else f"{name}\n(vs {base})")
        if base is None:
            continue
        base_s = wl["libraries"][base]["median_s"]
        for j, lib in enumerate(present):
            s = wl["libraries"].get(lib, {})
            if s.get("status") != "ok":
                continue
            value = base_s / s["median_s"]
            values.append(value)
            x = i + (j - (len(present) - 1) / 2) * width
            colour = colours(LIBRARIES.index(lib) % 10)
            label = None if lib in labelled else lib
            ax.bar(x, value - 1.0, width, bottom=1.0, color=colour, label=label)
            if lib == base:
                # A zero-height bar is invisible: mark the baseline on the 1.0 line.
                ax.hlines(1.0, x - width / 2, x + width / 2, colors=[colour], linewidth=4)
            labelled.add(lib)
            above = value >= 1.0
            ax.annotate(
                f"{value:.0f}" if value >= 10 else f"{value:.2g}",
                (x, value),
                ha="center",
                va="bottom" if above else "top",
                fontsize=7,
                rotation=90,
                xytext=(0, 2 if above else -2),
                textcoords="offset points",
            )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 2.5, max(values) * 2.5)  # room for the labels
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.grid(axis="y", which="major", linewidth=0.4, alpha=0.5)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(names)), labels)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel(f"throughput relative to {BASELINE} (higher is faster)")
    meta = report["meta"]
    title = f"nursery_io benchmarks: median of {meta['rounds']} round(s), {meta['size']} sizes"
    if any(_chart_baseline(wl) != BASELINE for wl in workloads.values()):
        title += f"\n(where {BASELINE} is unavailable, bars are relative to the named peer)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=4, loc="upper left", bbox_to_anchor=(0, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
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


__all__ = ["WORKLOADS", "Options", "run_benchmarks", "target_lines", "write_outputs"]
