"""The tree tool example: hashes match hashlib, copies match byte for byte, and the number
of files being worked on never exceeds --jobs."""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import nursery_io
from examples import tree_tool

EXAMPLE = Path(__file__).parents[2] / "examples" / "tree_tool.py"

NAMES = [
    "top.txt",
    "empty",
    "big.bin",
    "a/b/c/d/deep.txt",
    "a/b/also empty",
    "a/b/c/sibling.dat",
    "\u00fcn\u00efc\u00f8d\u00e9/\u65e5\u672c\u8a9e.txt",
    "\u00fcn\u00efc\u00f8d\u00e9/emoji \U0001f600.md",
    "spaces in dir/file with spaces",
    "back\\slash",
] + [f"many/file{n:03}" for n in range(40)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    for n, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in ("empty", "a/b/also empty"):
            data = b""
        elif name == "big.bin":
            data = os.urandom(5 * 1024 * 1024 + 123)  # several chunks, the last one partial
        else:
            data = f"file {n}: {name}\n".encode() * (n + 1)
        path.write_bytes(data)
    (root / "empty dir" / "nested empty").mkdir(parents=True)
    (root / "top.txt").chmod(0o640)
    (root / "link").symlink_to("top.txt")  # symlinks are skipped
    return root


def expected_digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in NAMES}


class ConcurrencyProbe:
    """Wraps a per-file function and records how many calls are in progress at once."""

    def __init__(self, function: Callable[..., Awaitable[Any]]) -> None:
        self.function = function
        self.active = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, *args: Any) -> Any:
        self.active += 1
        self.calls += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self.function(*args)
        finally:
            self.active -= 1


async def test_hashes_match_hashlib(tree: Path) -> None:
    with nursery_io.fail_after(60):
        report = await tree_tool.process_tree(nursery_io.Path(tree), None, jobs=4)
    assert report.errors == {}
    assert report.digests == expected_digests(tree)
    assert report.files_done == len(NAMES)
    assert report.bytes_done == sum((tree / name).stat().st_size for name in NAMES)


@pytest.mark.parametrize("jobs", [1, 3, 16])
async def test_hashing_never_exceeds_the_job_limit(
    tree: Path, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = ConcurrencyProbe(tree_tool.hash_file)
    monkeypatch.setattr(tree_tool, "hash_file", probe)
    with nursery_io.fail_after(60):
        report = await tree_tool.process_tree(nursery_io.Path(tree), None, jobs=jobs)
    assert report.digests == expected_digests(tree)
    assert probe.calls == len(NAMES)
    # All tasks start together, so the limit is reached, and never passed.
    assert probe.peak == jobs


async def test_copy_is_byte_for_byte(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = ConcurrencyProbe(tree_tool.copy_file)
    monkeypatch.setattr(tree_tool, "copy_file", probe)
    destination = tmp_path / "out" / "copy"
    with nursery_io.fail_after(60):
        report = await tree_tool.process_tree(
            nursery_io.Path(tree), nursery_io.Path(destination), jobs=5
        )
    assert report.errors == {}
    assert probe.peak == 5
    assert report.files_done == len(NAMES)
    for name in NAMES:
        assert filecmp.cmp(tree / name, destination / name, shallow=False), name
    assert (destination / "top.txt").stat().st_mode & 0o777 == 0o640
    # The same directories (empty ones included), and nothing else: the symlink is skipped.
    assert sorted(listing(destination)) == sorted(set(listing(tree)) - {"link"})


def listing(root: Path) -> list[str]:
    return [str(path.relative_to(root)) for path in root.rglob("*")]


async def test_one_unreadable_file_is_reported_not_fatal(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_hash_file = tree_tool.hash_file

    async def flaky(path: nursery_io.Path) -> tuple[str, int]:
        if path.name == "deep.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return await real_hash_file(path)

    monkeypatch.setattr(tree_tool, "hash_file", flaky)
    with nursery_io.fail_after(60):
        report = await tree_tool.process_tree(nursery_io.Path(tree), None, jobs=4)
    assert report.errors == {"a/b/c/d/deep.txt": "Permission denied"}
    expected = expected_digests(tree)
    del expected["a/b/c/d/deep.txt"]
    assert report.digests == expected


def test_sha256sum_line_escapes_like_sha256sum() -> None:
    assert tree_tool.sha256sum_line("ab", "x/y z") == "ab  x/y z"
    assert tree_tool.sha256sum_line("ab", "a\\b\nc") == "\\ab  a\\\\b\\nc"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_runs_as_a_script(tree: Path, tmp_path: Path) -> None:
    hashed = run_script("hash", str(tree), "--jobs", "6").stdout
    # Sorted by path, in sha256sum's format.
    expected = [
        tree_tool.sha256sum_line(digest, str(tree / name))
        for name, digest in sorted(expected_digests(tree).items())
    ]
    assert hashed.splitlines() == expected
    if shutil.which("sha256sum"):
        sums = tmp_path / "SHA256SUMS"
        sums.write_text(hashed)
        subprocess.run(["sha256sum", "--quiet", "-c", str(sums)], check=True, timeout=60)

    destination = tmp_path / "copy"
    copied = run_script("copy", str(tree), str(destination), "--jobs", "3").stdout
    assert copied.startswith(f"copied {len(NAMES)} files (5.3 MB) to {destination}")
    assert all(filecmp.cmp(tree / n, destination / n, shallow=False) for n in NAMES)

    refused = subprocess.run(
        [sys.executable, str(EXAMPLE), "copy", str(tree), str(tree / "a")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "the destination can't be inside the source" in refused.stderr


def run_failing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_paths_give_one_line_errors(tree: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a directory")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "top.txt").mkdir()  # where a file would go, a directory is in the way
    cases = [
        (["hash", str(tmp_path / "missing")], f"{tmp_path / 'missing'}: No such file or directory"),
        (["hash", str(a_file)], f"{a_file}: Not a directory"),
        (["copy", str(tmp_path / "missing"), str(tmp_path / "out")], "No such file or directory"),
        (["copy", str(tree), str(a_file)], f"can't create {a_file}: File exists"),
        (
            ["copy", str(tree), str(a_file / "sub")],
            f"can't create {a_file / 'sub'}: Not a directory",
        ),
        (["copy", str(tree), str(taken)], f"can't write {taken / 'top.txt'}: Is a directory"),
    ]
    if os.geteuid() == 0:
        # root may write anywhere a permission bit says no; /sys says no to root too.
        cases.append((["copy", str(tree), "/sys/tree-tool-test"], "Operation not permitted"))
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((["copy", str(tree), str(locked / "out")], "Permission denied"))
    for args, message in cases:
        completed = run_failing(*args)
        assert completed.returncode == 1, (args, completed.stderr)
        assert completed.stdout == ""
        assert completed.stderr.endswith(f"{message}\n"), (args, completed.stderr)
        assert completed.stderr.startswith("tree_tool.py: ")
        assert completed.stderr.count("\n") == 1, (args, completed.stderr)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def special_tree(tmp_path: Path) -> Path:
    root = tmp_path / "special"
    (root / "sub").mkdir(parents=True)
    (root / "real.txt").write_text("real\n")
    (root / "sub" / "link").symlink_to("../real.txt")
    (root / "dangling").symlink_to("nowhere")
    (root / "dir-link").symlink_to("sub")
    os.mkfifo(root / "sub" / "fifo")
    return root


def test_links_and_fifos_are_reported(special_tree: Path, tmp_path: Path) -> None:
    for args in (["hash", str(special_tree)], ["copy", str(special_tree), str(tmp_path / "c")]):
        completed = run_failing(*args)
        assert completed.returncode == 0, completed.stderr
        assert completed.stderr.splitlines() == [
            f"tree_tool.py: skipped {special_tree / 'dangling'}: dangling symbolic link to nowhere",
            f"tree_tool.py: skipped {special_tree / 'dir-link'}: symbolic link to sub",
            f"tree_tool.py: skipped {special_tree / 'sub/fifo'}: FIFO",
            f"tree_tool.py: skipped {special_tree / 'sub/link'}: symbolic link to ../real.txt",
            "tree_tool.py: skipped 4 of the tree's entries (3 symbolic links, 1 FIFO): only "
            "regular files and directories are processed",
        ]
    hashed = run_failing("hash", str(special_tree)).stdout
    assert hashed.splitlines() == [
        tree_tool.sha256sum_line(
            hashlib.sha256(b"real\n").hexdigest(), str(special_tree / "real.txt")
        )
    ]
    assert sorted(listing(tmp_path / "c")) == ["real.txt", "sub"]


async def test_an_unreadable_subdirectory_is_reported(
    special_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_iterdir = nursery_io.Path.iterdir

    async def iterdir(self: nursery_io.Path) -> list[nursery_io.Path]:
        if self.name == "sub":
            raise PermissionError(13, "Permission denied", str(self))
        return await real_iterdir(self)

    monkeypatch.setattr(nursery_io.Path, "iterdir", iterdir)
    with nursery_io.fail_after(60):
        report = await tree_tool.process_tree(nursery_io.Path(special_tree), None, jobs=2)
    assert report.errors == {"sub": "Permission denied"}
    assert list(report.digests) == ["real.txt"]
    assert set(report.skipped) == {"dangling", "dir-link"}


def test_no_progress_line_when_stderr_is_not_a_terminal(tree: Path) -> None:
    (tree / "link").unlink()
    completed = run_failing("hash", str(tree))
    assert completed.returncode == 0
    assert completed.stderr == ""  # no progress line, no escape sequences
    assert "\r" not in completed.stdout and "\x1b" not in completed.stdout


def test_progress_line_on_a_terminal(tree: Path) -> None:
    # stderr on a pseudo-terminal, stdout a pipe (as in `tree_tool.py hash DIR > SUMS`). The
    # delay is 0 so that even this small tree shows the progress line.
    import pty

    code = (
        "import sys; from examples import tree_tool as t; "
        "t.PROGRESS_DELAY = t.PROGRESS_INTERVAL = 0; sys.argv[0] = 'tree_tool.py'; "
        "sys.exit(t.main(sys.argv[1:]))"
    )
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "hash", str(tree)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            cwd=Path(__file__).parents[2],
        )
        os.close(terminal)
        shown = bytearray()
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the process exited and closed the terminal
                break
            if not data:
                break
            shown += data
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert process.returncode == 0
    text = shown.decode()
    # Some count of files is shown (which ones depends on how the tasks interleave).
    assert re.search(rf"\d+/{len(NAMES)} files \(\d+%\)", text), text
    progress, notes = text.split("tree_tool.py: skipped", 1)  # the symlink's note follows
    # Redrawn in place, not line after line, then erased: the notes (and the shell's
    # prompt) start on a clean line.
    assert "\n" not in progress
    assert progress.endswith("\r\x1b[K")
    assert "\x1b" not in notes
    # stdout (the checksums) has no trace of it.
    assert b"\r" not in stdout and b"\x1b" not in stdout
    assert len(stdout.splitlines()) == len(NAMES)
