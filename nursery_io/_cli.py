"""``python -m nursery_io``: the capability report, or ``run`` to start a program.

``python -m nursery_io`` (no arguments) shows what the kernel layer found and runs a
short demo. ``python -m nursery_io run [--as-trio] script.py [args]`` or ``... run
[--as-trio] -m module [args]`` runs a program the way ``python`` would, after putting
nursery_io in place first: with ``--as-trio``, ``import trio`` gives nursery_io (trio
mode), which must happen before the program or its dependencies import trio.

``python -m nursery_io ps|pstree|console PID`` looks inside a running program that serves
the console endpoint (``NURSERY_IO_CONSOLE=1``): see ``nursery_io._introspect._cli``.
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["main"]

_RUN_USAGE = (
    "usage: python -m nursery_io run [--as-trio] (script.py | -m module) [args ...]\n"
    "\n"
    "Run a Python program with nursery_io set up first.\n"
    "  --as-trio   trio mode: 'import trio' gives nursery_io, and sniffio reports \"trio\"\n"
)


def _run_program(arguments: list[str]) -> int:
    as_trio = False
    while arguments and arguments[0].startswith("-") and arguments[0] != "-m":
        option = arguments.pop(0)
        if option == "--as-trio":
            as_trio = True
        elif option in ("-h", "--help"):
            sys.stdout.write(_RUN_USAGE)
            return 0
        else:
            sys.stderr.write(f"nursery_io run: unknown option {option!r}\n\n{_RUN_USAGE}")
            return 2
    if not arguments or (arguments[0] == "-m" and len(arguments) == 1):
        sys.stderr.write(f"nursery_io run: nothing to run\n\n{_RUN_USAGE}")
        return 2
    if as_trio:
        from ._trio_mode import install_as_trio

        install_as_trio()
    if arguments[0] == "-m":
        module, *rest = arguments[1:]
        # As ``python -m``: the current directory first on the path, argv[0] the module's file
        # (runpy fills it in).
        sys.argv = [module, *rest]
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script, *rest = arguments
        if not os.path.exists(script):
            sys.stderr.write(f"nursery_io run: can't open file {script!r}: no such file\n")
            return 2
        sys.argv = [script, *rest]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nursery_io``; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "run":
        return _run_program(arguments[1:])
    if arguments and arguments[0] in ("console", "ps", "pstree"):
        from ._introspect import _cli as introspect_cli

        command = getattr(introspect_cli, f"{arguments[0]}_main")
        return int(command(arguments[1:]))
    from ._showcase import main as showcase

    return showcase(arguments)
