import tempfile

import nursery_io


async def main() -> None:
    directory = nursery_io.Path(tempfile.mkdtemp())
    path = directory / "notes.txt"

    # open_file takes the same arguments as the built-in open().
    async with await nursery_io.open_file(path, "w") as f:
        await f.write("first line\n")
        await f.writelines(["second line\n", "third line\n"])

    async with await nursery_io.open_file(path) as f:
        async for line in f:
            print("read:", line.rstrip())

    # Positional reads don't move the file position, so tasks can share a file.
    async with await nursery_io.open_file(path, "rb") as f:
        print("4 bytes at offset 6:", await f.pread(4, 6))

    # Path has async versions of pathlib.Path's I/O methods.
    print("size:", (await path.stat()).st_size)
    print("text:", (await path.read_text()).splitlines())
    await (directory / "empty").touch()
    print("listing:", sorted(p.name for p in await directory.iterdir()))
    for child in await directory.iterdir():
        await child.unlink()
    await directory.rmdir()

    # Which engine served all this: io_uring, or the worker threads?
    files = nursery_io.lowlevel.current_statistics().io_statistics.file_engine
    print("engine:", files.engine)
    print("ops by engine:", dict(files.ops_by_engine))
    if files.fallback_reason:
        print("why threads:", files.fallback_reason)


if __name__ == "__main__":
    nursery_io.run(main)
