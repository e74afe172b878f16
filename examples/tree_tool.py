"""Hash or copy a directory tree, many files at a time, with a bound on how many.

    python examples/tree_tool.py hash DIRECTORY --jobs 8 > SHA256SUMS
    sha256sum -c SHA256SUMS            # the output is sha256sum's format
    python examples/tree_tool.py copy SOURCE DESTINATION --jobs 8

The tree is listed first (``Path.iterdir`` and ``Path.lstat``), then every regular file gets
a task of its own. Tasks are cheap, but open files and I/O in flight are not, so a
``CapacityLimiter`` lets at most ``--jobs`` tasks do their work at any moment; the others
wait their turn at ``async with limiter``. Every file operation (open, read, write, close,
stat, mkdir) runs on nursery_io's file engine: io_uring when the kernel allows it, worker
threads otherwise.

Everything happens inside one nursery: if anything goes wrong that isn't about one file
(the source isn't a directory, the destination can't be created or written, the disk is
full), all the other tasks are cancelled, the error comes out of ``nursery_io.run`` and the
tool prints it on one line and exits with status 1. A file or directory that can't be read
is reported and skipped, and the exit status is 1, as with ``sha256sum``. Symbolic links
(dangling or not), FIFOs, sockets and device files are neither hashed nor copied: each one
is named on stderr, with a summary line.

On a terminal, a large tree gets a progress line on stderr (files and bytes done), which is
erased when the work is over; when stderr is a file or a pipe there is none.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import stat
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import nursery_io

CHUNK_SIZE = 1024 * 1024
# Hashing a chunk of this size or more goes to a worker thread; see hash_file.
THREAD_HASH_THRESHOLD = 256 * 1024
# The progress line appears only once a run has taken this long: small trees don't flicker.
PROGRESS_DELAY = 0.5
PROGRESS_INTERVAL = 0.1
MAX_SKIP_NOTES = 20  # skipped entries named one by one; the summary line counts them all


class FatalError(Exception):
    """Something that isn't about one file: the whole run stops, with this message."""


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass
class Tree:
    """What ``list_tree`` found, as paths relative to the root, parents before children."""

    directories: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> what it is
    errors: dict[str, str] = field(default_factory=dict)  # unreadable subdirectories


@dataclass
class Report:
    digests: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 (hash)
    errors: dict[str, str] = field(default_factory=dict)  # relative path -> what went wrong
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> what it is
    files_total: int | None = None  # known once the tree is listed
    files_done: int = 0
    bytes_done: int = 0


async def list_tree(root: nursery_io.Path) -> Tree:
    """List ``root`` recursively. Directories are read one at a time: listing is a worker
    thread hop per directory, cheap next to reading the files themselves."""
    tree = Tree()
    try:
        entries = await root.iterdir()
    except OSError as exc:
        raise FatalError(f"{root}: {describe_os_error(exc)}") from exc
    pending = [entries]
    while pending:
        entries = pending.pop()
        for entry in sorted(entries):
            relative = str(entry.relative_to(root))
            try:
                mode = (await entry.lstat()).st_mode  # lstat: don't follow symlinks
            except FileNotFoundError:
                continue  # deleted since the listing: it isn't part of the tree any more
            if stat.S_ISDIR(mode):
                try:
                    children = await entry.iterdir()
                except OSError as exc:
                    tree.errors[relative] = describe_os_error(exc)
                    continue
                tree.directories.append(relative)
                pending.append(children)
            elif stat.S_ISREG(mode):
                tree.files.append(relative)
            else:
                tree.skipped[relative] = await describe_special(entry, mode)
    return tree


async def describe_special(path: nursery_io.Path, mode: int) -> str:
    """What a directory entry that is neither a file nor a directory is, in a few words."""
    if stat.S_ISLNK(mode):
        target = await path.readlink()
        dangling = not await path.exists()  # exists() follows the link
        return f"{'dangling ' if dangling else ''}symbolic link to {target}"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


async def hash_file(path: nursery_io.Path) -> tuple[str, int]:
    """The sha256 hex digest of ``path`` and its size."""
    digest = hashlib.sha256()
    size = 0
    async with await nursery_io.open_file(path, "rb", buffering=0) as file:
        while chunk := await file.read(CHUNK_SIZE):
            size += len(chunk)
            if len(chunk) >= THREAD_HASH_THRESHOLD:
                # sha256 runs at roughly 0.5-2 GB/s, so a 1 MiB chunk is a millisecond or
                # more of CPU: long enough to delay every other task in the loop. hashlib
                # releases the GIL for big inputs, so in a thread it runs in parallel with the
                # loop (and with other files' hashing).
                await nursery_io.to_thread.run_sync(digest.update, chunk)
            else:
                # A thread round trip costs tens of microseconds, more than hashing a small
                # chunk takes: small files are hashed right here.
                digest.update(chunk)
    return digest.hexdigest(), size


async def copy_file(source: nursery_io.Path, destination: nursery_io.Path) -> int:
    """Copy ``source`` to ``destination``, with its permission bits; return the size.

    An OSError about the source (this one file can't be read) propagates as it is; one about
    the destination becomes a FatalError: if we can't write there, the next file won't fare
    better (a full disk, a read-only file system).
    """
    size = 0
    async with await nursery_io.open_file(source, "rb", buffering=0) as reader:
        mode = stat.S_IMODE((await source.stat()).st_mode)
        try:
            writer = await nursery_io.open_file(destination, "wb", buffering=0)
        except OSError as exc:
            raise FatalError(f"can't write {destination}: {describe_os_error(exc)}") from exc
        async with writer:
            # No CPU work here at all: while this task waits for a read or a write, the
            # other jobs' operations are in flight too, which is where the speed of a
            # parallel copy comes from.
            while chunk := await reader.read(CHUNK_SIZE):
                try:
                    await writer.write(chunk)
                except OSError as exc:
                    message = f"can't write {destination}: {describe_os_error(exc)}"
                    raise FatalError(message) from exc
                size += len(chunk)
    try:
        await destination.chmod(mode)
    except OSError as exc:
        raise FatalError(f"can't chmod {destination}: {describe_os_error(exc)}") from exc
    return size


class TerminalProgress:
    """A progress line on a terminal, redrawn in place, erased at the end.

    It stays quiet for the first PROGRESS_DELAY seconds, so only large trees show it.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False

    async def run(self, report: Report) -> None:
        """Redraw every PROGRESS_INTERVAL seconds until cancelled, then erase the line."""
        started = time.monotonic()
        try:
            while True:
                await nursery_io.sleep(PROGRESS_INTERVAL)
                if time.monotonic() - started >= PROGRESS_DELAY:
                    self.draw(report)
        finally:
            self.erase()

    def draw(self, report: Report) -> None:
        if report.files_total is None:
            text = "listing the tree..."
        else:
            percent = 100 * report.files_done // max(1, report.files_total)
            text = (
                f"{report.files_done:,}/{report.files_total:,} files ({percent}%), "
                f"{report.bytes_done / 1e6:,.1f} MB"
            )
        # \r: back to the start of the line; \x1b[K: clear what a longer text left there.
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()
        self.drawn = True

    def erase(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


async def process_tree(
    source: nursery_io.Path,
    destination: nursery_io.Path | None,
    jobs: int,
    progress: TerminalProgress | None = None,
) -> Report:
    """Hash every file below ``source`` (and copy it below ``destination``, if given),
    ``jobs`` files at a time."""
    report = Report()
    async with nursery_io.open_nursery() as nursery:
        if progress is not None:
            nursery.start_soon(progress.run, report)
        await hash_or_copy(source, destination, jobs, report)
        nursery.cancel_scope.cancel()  # the progress display
    return report


async def hash_or_copy(
    source: nursery_io.Path, destination: nursery_io.Path | None, jobs: int, report: Report
) -> None:
    tree = await list_tree(source)
    report.errors.update(tree.errors)
    report.skipped = tree.skipped
    report.files_total = len(tree.files)
    if destination is not None:
        # Create the directories first (parents come before children in the listing), so
        # the file tasks never race to create the same directory. Empty ones get copied too.
        try:
            await destination.mkdir(parents=True, exist_ok=True)
            for relative in tree.directories:
                await (destination / relative).mkdir(exist_ok=True)
        except OSError as exc:
            where = exc.filename or destination
            raise FatalError(f"can't create {where}: {describe_os_error(exc)}") from exc

    limiter = nursery_io.CapacityLimiter(jobs)

    async def one_file(relative: str) -> None:
        async with limiter:  # at most `jobs` tasks get past this line at a time
            try:
                if destination is None:
                    digest, size = await hash_file(source / relative)
                    report.digests[relative] = digest
                else:
                    size = await copy_file(source / relative, destination / relative)
            except OSError as exc:
                # One unreadable file is reported, not fatal: letting the error escape
                # would cancel every other task in the nursery (right for disk-full, which
                # copy_file raises as a FatalError, wrong for one file we may not read).
                report.errors[relative] = describe_os_error(exc)
                return
        report.files_done += 1
        report.bytes_done += size

    async with nursery_io.open_nursery() as nursery:
        for relative in tree.files:
            nursery.start_soon(one_file, relative)


def sha256sum_line(digest: str, path: str) -> str:
    """A line as ``sha256sum`` prints it (names with a backslash or newline are escaped)."""
    if "\\" in path or "\n" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest}  {escaped}"
    return f"{digest}  {path}"


def fatal_error(exc: BaseException) -> FatalError | None:
    """The FatalError an exception (group) from the run is about; None if it holds anything
    else, which is a bug that deserves its traceback."""
    if isinstance(exc, FatalError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(FatalError)
        if matched is not None and rest is None:
            return fatal_error(matched.exceptions[0])
    return None


def report_skipped(skipped: dict[str, str], root: str, prog: str) -> None:
    for relative, what in sorted(skipped.items())[:MAX_SKIP_NOTES]:
        print(f"{prog}: skipped {os.path.join(root, relative)}: {what}", file=sys.stderr)
    if len(skipped) > MAX_SKIP_NOTES:
        print(f"{prog}: ... and {len(skipped) - MAX_SKIP_NOTES} more", file=sys.stderr)
    kinds = Counter("symbolic link" if "symbolic link" in w else w for w in skipped.values())
    summary = ", ".join(
        f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in kinds.items()
    )
    print(
        f"{prog}: skipped {len(skipped)} of the tree's entries ({summary}): only regular "
        "files and directories are processed",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    prog = parser.prog
    jobs = argparse.ArgumentParser(add_help=False)
    jobs.add_argument("--jobs", type=int, default=8, help="files processed at once")
    commands = parser.add_subparsers(dest="command", required=True)
    hash_command = commands.add_parser("hash", parents=[jobs], help="sha256sum every file")
    hash_command.add_argument("directory")
    copy_command = commands.add_parser("copy", parents=[jobs], help="copy files, dirs, modes")
    copy_command.add_argument("source")
    copy_command.add_argument("destination")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    if args.command == "hash":
        source, destination = args.directory, None
    else:
        source, destination = args.source, args.destination
        if pathlib.Path(destination).resolve().is_relative_to(pathlib.Path(source).resolve()):
            parser.error("the destination can't be inside the source")
    progress = TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = nursery_io.run(
            process_tree,
            nursery_io.Path(source),
            None if destination is None else nursery_io.Path(destination),
            args.jobs,
            progress,
        )
    except (FatalError, BaseExceptionGroup) as exc:
        error = fatal_error(exc)
        if error is None:
            raise
        print(f"{prog}: {error}", file=sys.stderr)
        return 1

    if args.command == "hash":
        for relative, digest in sorted(report.digests.items()):
            print(sha256sum_line(digest, str(nursery_io.Path(source) / relative)))
    else:
        megabytes = report.bytes_done / 1e6
        print(f"copied {report.files_done} files ({megabytes:.1f} MB) to {destination}")
    if report.skipped:
        report_skipped(report.skipped, source, prog)
    for relative, error in sorted(report.errors.items()):
        print(f"{prog}: {os.path.join(source, relative)}: {error}", file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
