"""The one benchmark command.

    python -m benchmarks.run [--only NAME,...] [--libraries LIB,...] [--rounds N] [--quick]
                             [--timeout S] [--out DIR]

Prints a Markdown table and the target lines, and writes latest.md, latest.json and
latest.png to DIR (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.harness import RESULTS, Options, render_markdown, run_benchmarks, write_outputs
from benchmarks.workloads import LIBRARIES, WORKLOADS


def _names(value: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="nursery_io vs trio, asyncio, uvloop, anyio"
    )
    parser.add_argument(
        "--only",
        type=lambda v: _names(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        metavar="NAME,...",
        help=f"workloads to run (default: all of {', '.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--libraries",
        type=lambda v: _names(v, LIBRARIES, "library"),
        default=list(LIBRARIES),
        metavar="LIB,...",
        help=f"libraries to run (default: all of {', '.join(LIBRARIES)})",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds before a run is killed (120)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"output dir ({RESULTS})")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    return Options(
        workloads=args.only,
        libraries=args.libraries,
        rounds=rounds,
        quick=args.quick,
        timeout=args.timeout,
        out=args.out,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    report = run_benchmarks(opts, progress=lambda line: print(line, file=sys.stderr, flush=True))
    paths = write_outputs(report, opts.out)
    print(render_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
