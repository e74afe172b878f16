"""Instructions per operation, side by side: a noise-free companion to ``benchmarks.run``.

    python -m benchmarks.icount [--only spawn,channel] [--libraries nursery_io,trio]

Wall-clock ratios on a shared machine move by 10-20% from run to run, which hides a
regression of that size. This counts the user-space instructions that CPython executes,
under valgrind's ``cachegrind`` tool (no cache simulation), which does not depend on what
else the machine is doing. Each (workload, library) runs twice in a fresh process, at the
workload's quick size and at ``SCALE`` times its scaling parameter; the difference divided
by the difference in operations is the marginal cost of one operation, free of start-up
and import costs.

It counts instructions, not time: system calls, cache misses and waiting are not in it. Use
it for CPU-bound scheduling workloads (the ones that declare ``ICOUNT_PARAM``) and to check
that a change to a hot path did not add work; use ``benchmarks.run`` for speed. Hash
randomisation is pinned (``PYTHONHASHSEED=0``) so dict layouts repeat; what remains varies by
well under 1% between runs.

Needs ``valgrind`` on PATH (``apt install valgrind``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.workloads import FLAVOURS, WORKLOADS, Context, Result, load

SCALE = 5
_DEFAULT_LIBRARIES = "nursery_io,trio,asyncio"
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _child(workload: str, library: str, params: dict[str, Any], workdir: str) -> None:
    """Run one variant once, without the harness's thread sampler (it wakes on wall time,
    so its instruction count would depend on how slow the run was), and print the ops."""
    from benchmarks.worker import _run_async

    module = load(workload)
    ctx = Context(params=params, workdir=Path(workdir))
    if hasattr(module, "setup"):
        ctx.state = module.setup(ctx)
    variant = getattr(module, f"run_{FLAVOURS[library]}")
    if FLAVOURS[library] == "trio_like":
        import importlib

        lib = importlib.import_module(library)
        outcome = _run_async(library, lambda: variant(lib, ctx))
    elif FLAVOURS[library] == "sync":
        outcome = variant(ctx)
    else:
        outcome = _run_async(library, lambda: variant(ctx))
    ops = outcome.ops if isinstance(outcome, Result) else int(outcome)
    print(json.dumps({"ops": ops}), flush=True)


def _instructions(
    workload: str, library: str, params: dict[str, Any], workdir: str
) -> tuple[int, int]:
    """(instructions, ops) of one child run under cachegrind."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.icount",
        "--child",
        workload,
        library,
        json.dumps(params),
        workdir,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    match = _REFS.search(done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or match is None or not lines:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise RuntimeError(f"{workload}/{library} failed:\n{tail}")
    return int(match.group(1).replace(",", "")), int(json.loads(lines[-1])["ops"])


def per_op(workload: str, library: str, workdir: str) -> float:
    """Marginal instructions per operation of ``workload`` on ``library``."""
    module = load(workload)
    name = module.ICOUNT_PARAM
    small = dict(module.SIZES["quick"])
    if hasattr(module, "prepare"):
        small |= module.prepare(small, Path(workdir))
    large = small | {name: small[name] * SCALE}
    i_small, ops_small = _instructions(workload, library, small, workdir)
    i_large, ops_large = _instructions(workload, library, large, workdir)
    return (i_large - i_small) / (ops_large - ops_small)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], json.loads(argv[3]), argv[4])
        return 0
    countable = [name for name in WORKLOADS if hasattr(load(name), "ICOUNT_PARAM")]
    parser = argparse.ArgumentParser(description="Instructions per operation, side by side.")
    parser.add_argument("--only", default=",".join(countable), help="workloads")
    parser.add_argument("--libraries", default=_DEFAULT_LIBRARIES)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("benchmarks.icount needs valgrind on PATH", file=sys.stderr)
        return 2
    workloads = [w for w in args.only.split(",") if w]
    unknown = [w for w in workloads if w not in countable]
    if unknown:
        parser.error(f"not countable: {', '.join(unknown)} (countable: {', '.join(countable)})")
    libraries = [lib for lib in args.libraries.split(",") if lib]
    print("| workload | " + " | ".join(f"{lib} instr/op" for lib in libraries) + " | ratios |")
    print("|---|" + "--:|" * len(libraries) + "---|")
    with tempfile.TemporaryDirectory(prefix="nursery_io-icount-") as workdir:
        for workload in workloads:
            counts = {lib: per_op(workload, lib, workdir) for lib in libraries}
            first = libraries[0]
            ratios = ", ".join(
                f"{counts[lib] / counts[first]:.2f}x fewer than {lib}" for lib in libraries[1:]
            )
            cells = " | ".join(f"{counts[lib]:,.0f}" for lib in libraries)
            print(f"| {workload} | {cells} | {first}: {ratios} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
