import nursery_io


async def greet(name: str, delay: float) -> None:
    await nursery_io.sleep(delay)
    print("hello,", name)


async def main() -> None:
    print("starting")
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(greet, "world", 0.2)
        nursery.start_soon(greet, "nursery", 0.1)
        print("both children started")
    # The `async with` block ends only when every child task has finished.
    print("all done")


if __name__ == "__main__":
    nursery_io.run(main)
