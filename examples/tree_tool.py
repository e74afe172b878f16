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
(say, the destination disk is full), all the other tasks are cancelled and the error comes
out of ``nursery_io.run``. A file that can't be read is reported and skipped, and the exit
status is 1, as with ``sha256sum``. Symbolic links and special files are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import stat
import sys
from dataclasses import dataclass, field

import nursery_io

CHUNK_SIZE = 1024 * 1024
# Hashing a chunk of this size or more goes to a worker thread; see hash_file.
THREAD_HASH_THRESHOLD = 256 * 1024


@dataclass
class Tree:
    """What ``list_tree`` found, as paths relative to the root, parents before children."""

    directories: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class Report:
    digests: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 (hash)
    errors: dict[str, str] = field(default_factory=dict)  # relative path -> what went wrong
    files_done: int = 0
    bytes_done: int = 0


async def list_tree(root: nursery_io.Path) -> Tree:
    """List ``root`` recursively. Directories are read one at a time: listing is a worker
    thread hop per directory, cheap next to reading the files themselves."""
    tree = Tree()
    pending = [root]
    while pending:
        directory = pending.pop()
        for entry in sorted(await directory.iterdir()):
            mode = (await entry.lstat()).st_mode  # lstat: don't follow symlinks
            relative = str(entry.relative_to(root))
            if stat.S_ISDIR(mode):
                tree.directories.append(relative)
                pending.append(entry)
            elif stat.S_ISREG(mode):
                tree.files.append(relative)
    return tree


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
    """Copy ``source`` to ``destination``, with its permission bits; return the size."""
    size = 0
    async with (
        await nursery_io.open_file(source, "rb", buffering=0) as reader,
        await nursery_io.open_file(destination, "wb", buffering=0) as writer,
    ):
        # No CPU work here at all: while this task waits for a read or a write, the other
        # jobs' operations are in flight too, which is where the speed of a parallel copy
        # comes from.
        while chunk := await reader.read(CHUNK_SIZE):
            await writer.write(chunk)
            size += len(chunk)
    await destination.chmod(stat.S_IMODE((await source.stat()).st_mode))
    return size


async def process_tree(
    source: nursery_io.Path, destination: nursery_io.Path | None, jobs: int
) -> Report:
    """Hash every file below ``source`` (and copy it below ``destination``, if given),
    ``jobs`` files at a time."""
    tree = await list_tree(source)
    if destination is not None:
        # Create the directories first (parents come before children in the listing), so
        # the file tasks never race to create the same directory. Empty ones get copied too.
        await destination.mkdir(parents=True, exist_ok=True)
        for relative in tree.directories:
            await (destination / relative).mkdir(exist_ok=True)

    report = Report()
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
                # would cancel every other task in the nursery (right for disk-full, wrong
                # for one file we may not read).
                report.errors[relative] = exc.strerror or str(exc)
                return
        report.files_done += 1
        report.bytes_done += size

    async with nursery_io.open_nursery() as nursery:
        for relative in tree.files:
            nursery.start_soon(one_file, relative)
    return report


def sha256sum_line(digest: str, path: str) -> str:
    """A line as ``sha256sum`` prints it (names with a backslash or newline are escaped)."""
    if "\\" in path or "\n" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest}  {escaped}"
    return f"{digest}  {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    report = nursery_io.run(
        process_tree,
        nursery_io.Path(source),
        None if destination is None else nursery_io.Path(destination),
        args.jobs,
    )

    if args.command == "hash":
        for relative, digest in sorted(report.digests.items()):
            print(sha256sum_line(digest, str(nursery_io.Path(source) / relative)))
    else:
        megabytes = report.bytes_done / 1e6
        print(f"copied {report.files_done} files ({megabytes:.1f} MB) to {destination}")
    for relative, error in sorted(report.errors.items()):
        print(f"{sys.argv[0]}: {relative}: {error}", file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
