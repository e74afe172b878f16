"""Start-up cost: ``import`` time, and a short script's time to its first file read.

    python -m benchmarks.startup [--rounds N] [--libraries LIB,...] [--json FILE]
                                 [--source-only]

Every measurement is a fresh ``python -c`` process; within a round the libraries alternate
(the first one rotating from round to round) and the table shows medians with the
25th-75th percentile spread. Three numbers per library:

- **import**: ``import LIB`` alone, timed inside the process (interpreter start excluded).
- **first read**: ``import LIB``, then one run that opens a small file, reads it and closes
  it; timed inside the process from before the import to the run's return.
- **process**: the whole process as its parent sees it (interpreter start and exit
  included), and the same for ``python -c pass`` as the floor.

The first read is ``open_file`` + ``read`` + ``aclose`` on nursery_io and trio, and
``asyncio.to_thread`` of a plain open/read/close on asyncio (its standard way; no
third-party file library is imported). ``nursery_io-threads`` is nursery_io with
``NURSERY_IO_URING=0``.

Bytecode: by default every process gets a private, pre-warmed ``PYTHONPYCACHEPREFIX``, so
every library loads from bytecode as an installed package does (a development environment
with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile nursery_io from source on every
start, and only nursery_io). ``--source-only`` measures that case instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

LIBRARIES: tuple[str, ...] = ("nursery_io", "nursery_io-threads", "trio", "asyncio")
REFERENCE = "trio"

_IMPORT_SCRIPT = """\
import time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
print((t1 - t0) * 1000)
"""

_TRIO_LIKE_SCRIPT = """\
import time
t0 = time.perf_counter()
import {module} as lib

async def main():
    f = await lib.open_file({path!r}, "rb")
    data = await f.read()
    await f.aclose()
    return data

data = lib.run(main)
t1 = time.perf_counter()
assert len(data) == {size}
print((t1 - t0) * 1000)
"""

_ASYNCIO_SCRIPT = """\
import time
t0 = time.perf_counter()
import asyncio

def read(path):
    with open(path, "rb") as f:
        return f.read()

async def main():
    return await asyncio.to_thread(read, {path!r})

data = asyncio.run(main())
t1 = time.perf_counter()
assert len(data) == {size}
print((t1 - t0) * 1000)
"""

FILE_SIZE = 4096


def _module(library: str) -> str:
    return "nursery_io" if library.startswith("nursery_io") else library


def _env(library: str, pycache: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NURSERY_IO_URING", None)
    if library == "nursery_io-threads":
        env["NURSERY_IO_URING"] = "0"
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _script(kind: str, library: str, path: str) -> str:
    if kind == "import":
        return _IMPORT_SCRIPT.format(module=_module(library))
    if kind == "pass":
        return "pass"
    if library == "asyncio":
        return _ASYNCIO_SCRIPT.format(path=path, size=FILE_SIZE)
    return _TRIO_LIKE_SCRIPT.format(module=_module(library), path=path, size=FILE_SIZE)


def measure(kind: str, library: str, path: str, pycache: str | None) -> tuple[float, float]:
    """One fresh process: (the time it printed in ms, the process's wall time in ms)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _script(kind, library, path)],
        cwd=ROOT,
        env=_env(library, pycache),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} on {library} failed:\n{proc.stderr}")
    inner = float(proc.stdout.strip()) if kind != "pass" else 0.0
    return inner, wall


def _summary(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "p25": qs[0], "p75": qs[2]}


def run(libraries: list[str], rounds: int, source_only: bool) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        lib: {"import": [], "first_read": [], "process": []} for lib in libraries
    }
    floor: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nursery_io_startup_") as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(FILE_SIZE))
        pycache = None if source_only else os.path.join(tmp, "pycache")
        for lib in libraries:  # warm-up: writes each library's bytecode once
            measure("first_read", lib, path, pycache)
        for i in range(rounds):
            order = libraries[i % len(libraries) :] + libraries[: i % len(libraries)]
            floor.append(measure("pass", "asyncio", path, pycache)[1])
            for lib in order:
                samples[lib]["import"].append(measure("import", lib, path, pycache)[0])
                inner, wall = measure("first_read", lib, path, pycache)
                samples[lib]["first_read"].append(inner)
                samples[lib]["process"].append(wall)
    return {
        "meta": {
            "rounds": rounds,
            "python": sys.version.split()[0],
            "bytecode": "source" if source_only else "cached",
            "python_pass_ms": _summary(floor),
        },
        "libraries": {
            lib: {kind: _summary(values) for kind, values in kinds.items()}
            for lib, kinds in samples.items()
        },
        "raw": samples,
    }


def render(report: dict[str, Any]) -> str:
    libs = report["libraries"]
    ref = libs.get(REFERENCE)
    lines = [
        f"Start-up, median of {report['meta']['rounds']} fresh processes per cell "
        f"(ms; p25-p75 in brackets; bytecode: {report['meta']['bytecode']})",
        "",
        "| library | import | vs trio | first read | vs trio | process | vs trio |",
        "|---|---|---|---|---|---|---|",
    ]
    for lib, kinds in libs.items():
        cells = [lib]
        for kind in ("import", "first_read", "process"):
            s = kinds[kind]
            cells.append(f"{s['median']:.1f} [{s['p25']:.1f}-{s['p75']:.1f}]")
            cells.append(f"{s['median'] / ref[kind]['median']:.2f}" if ref else "-")
        lines.append("| " + " | ".join(cells) + " |")
    floor = report["meta"]["python_pass_ms"]
    lines += ["", f"`python -c pass`: {floor['median']:.1f} ms (the floor of the process column)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="processes per cell (30)")
    parser.add_argument(
        "--libraries",
        default=",".join(LIBRARIES),
        help=f"comma-separated, from {', '.join(LIBRARIES)}",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="no bytecode cache: every process compiles what it imports from source",
    )
    args = parser.parse_args(argv)
    libraries = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = [name for name in libraries if name not in LIBRARIES]
    if unknown or not libraries:
        parser.error(f"unknown libraries: {', '.join(unknown)} (known: {', '.join(LIBRARIES)})")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    report = run(libraries, args.rounds, args.source_only)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    print(render(report))


if __name__ == "__main__":
    main()
