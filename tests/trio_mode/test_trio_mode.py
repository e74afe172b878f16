"""Trio mode: ``install_as_trio()`` and ``python -m nursery_io run --as-trio``.

Every check runs in a fresh interpreter: trio mode changes the import system for the whole
process, and this test process has the real trio imported already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYTHON = sys.executable


def run_python(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, *arguments], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


REPORTING_PROGRAM = """
    import json, sys
    import sniffio
    import trio, trio.abc, trio.from_thread, trio.lowlevel, trio.socket, trio.testing
    import trio.to_thread
    import nursery_io

    async def main():
        inside = sniffio.current_async_library()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)
        in_thread = await trio.to_thread.run_sync(
            lambda: trio.from_thread.run_sync(sniffio.current_async_library)
        )
        return inside, in_thread

    inside, in_thread = trio.run(main)
    json.dump({
        "trio_is_ours": trio is nursery_io,
        "submodules": [getattr(trio, m) is getattr(nursery_io, m) for m in
                       ("abc", "from_thread", "lowlevel", "socket", "testing", "to_thread")],
        "sys_modules": sys.modules["trio.lowlevel"] is nursery_io.lowlevel,
        "own_spec": nursery_io.__spec__.name,
        "inside": inside,
        "from_thread": in_thread,
        "argv": sys.argv,
        "path0": sys.path[0],
    }, sys.stdout)
"""


def test_run_as_trio_script(tmp_path: Path) -> None:
    script = write(tmp_path / "program.py", REPORTING_PROGRAM)
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script), "one", "--two")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trio_is_ours"] is True
    assert report["submodules"] == [True] * 6
    assert report["sys_modules"] is True
    assert report["own_spec"] == "nursery_io"
    assert report["inside"] == "trio"
    assert report["from_thread"] == "trio"
    assert report["argv"] == [str(script), "one", "--two"]
    assert report["path0"] == str(tmp_path)


def test_run_as_trio_module(tmp_path: Path) -> None:
    write(tmp_path / "reporting_module.py", REPORTING_PROGRAM)
    result = run_python(
        "-m", "nursery_io", "run", "--as-trio", "-m", "reporting_module", "x", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trio_is_ours"] is True
    assert report["inside"] == "trio"
    assert report["argv"] == [str(tmp_path / "reporting_module.py"), "x"]


def test_install_as_trio_in_program(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    # Build the program explicitly: a main that awaits, then reports sniffio's answer.
    script.write_text(
        textwrap.dedent(
            """
            import nursery_io
            nursery_io.install_as_trio()
            nursery_io.install_as_trio()  # a second call is harmless
            import sniffio, trio
            assert trio is nursery_io

            async def main():
                await trio.sleep(0)
                return sniffio.current_async_library()

            print(trio.run(main))
            """
        )
    )
    result = run_python(str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "trio"


def test_without_trio_mode_the_name_stays(tmp_path: Path) -> None:
    script = write(
        tmp_path / "program.py",
        """
        import sniffio, nursery_io

        async def main():
            return sniffio.current_async_library()

        print(nursery_io.run(main))
        """,
    )
    result = run_python("-m", "nursery_io", "run", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nursery_io"


def test_real_trio_imported_first_is_refused(tmp_path: Path) -> None:
    script = write(
        tmp_path / "program.py",
        """
        import trio
        import nursery_io
        try:
            nursery_io.install_as_trio()
        except RuntimeError as exc:
            print(exc)
        """,
    )
    result = run_python(str(script))
    assert result.returncode == 0, result.stderr
    assert "must be called before anything imports trio" in result.stdout
    assert "python -m nursery_io run --as-trio" in result.stdout


def test_private_trio_module_is_a_clear_error(tmp_path: Path) -> None:
    script = write(
        tmp_path / "program.py",
        """
        try:
            import trio._repl
        except ModuleNotFoundError as exc:
            print(exc.name, "|", exc)
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    name, message = result.stdout.strip().split(" | ")
    assert name == "trio._repl"
    assert "trio mode" in message


def test_private_file_io_is_reachable_as_an_attribute(tmp_path: Path) -> None:
    # quart-trio annotates with trio._file_io.AsyncIOWrapper, evaluated at import time.
    script = write(
        tmp_path / "program.py",
        """
        import trio

        async def main():
            with open(__file__) as file:
                return type(trio.wrap_file(file)) is trio._file_io.AsyncIOWrapper

        print(trio.run(main))
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_exit_status_and_exceptions_pass_through(tmp_path: Path) -> None:
    exiting = write(tmp_path / "exiting.py", "import sys; sys.exit(7)\n")
    assert run_python("-m", "nursery_io", "run", "--as-trio", str(exiting)).returncode == 7
    raising = write(tmp_path / "raising.py", "raise ValueError('boom')\n")
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(raising))
    assert result.returncode == 1
    assert "ValueError: boom" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "nothing to run"),
        (["--as-trio"], "nothing to run"),
        (["--as-trio", "-m"], "nothing to run"),
        (["--bogus", "x.py"], "unknown option '--bogus'"),
        (["--as-trio", "does-not-exist.py"], "can't open file 'does-not-exist.py'"),
    ],
)
def test_run_usage_errors(arguments: list[str], message: str) -> None:
    result = run_python("-m", "nursery_io", "run", *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_run_help() -> None:
    result = run_python("-m", "nursery_io", "run", "--help")
    assert result.returncode == 0
    assert "--as-trio" in result.stdout


def test_anyio_trio_backend_runs_on_nursery_io(tmp_path: Path) -> None:
    """anyio's own trio backend, in trio mode, runs on nursery_io's loop."""
    script = write(
        tmp_path / "program.py",
        """
        import anyio, sniffio
        import nursery_io

        async def main():
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.sleep, 0.01)
            stats = nursery_io.lowlevel.current_statistics()
            value = await anyio.to_thread.run_sync(lambda: 42)
            return sniffio.current_async_library(), hasattr(stats, "kernel_polls"), value

        print(anyio.run(main, backend="trio"))
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('trio', True, 42)"


def test_environment_is_inherited_unchanged(tmp_path: Path) -> None:
    """Trio mode is per process: a child Python started by the program is plain."""
    script = write(
        tmp_path / "program.py",
        """
        import subprocess, sys
        out = subprocess.run(
            [sys.executable, "-c", "import trio; print(trio.__name__)"],
            capture_output=True, text=True, check=True,
        )
        print(out.stdout.strip())
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "trio"


def test_trio_modules_are_complete_from_the_start(tmp_path: Path) -> None:
    # Real trio imports all its names up front: walking vars(trio) sees them all, and the
    # dict doesn't change under the walk when a name is touched (trio's own test suite
    # walks it and touches trio.Path mid-walk).
    script = write(
        tmp_path / "program.py",
        """
        import trio

        for module in (trio, trio.lowlevel):
            for name, value in module.__dict__.items():
                assert trio.Path is not None
        missing = [n for n in ("Path", "open_file", "DTLSEndpoint") if n not in vars(trio)]
        missing += [n for n in ("open_process", "FdStream") if n not in vars(trio.lowlevel)]
        print(missing)
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_public_constructor_messages_use_the_trio_name(tmp_path: Path) -> None:
    script = write(
        tmp_path / "program.py",
        """
        import trio

        for cls in (trio.Cancelled, trio.Nursery):
            try:
                cls()
            except TypeError as exc:
                print(exc)
        """,
    )
    result = run_python("-m", "nursery_io", "run", "--as-trio", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "trio.Cancelled has no public constructor",
        "trio.Nursery has no public constructor",
    ]
