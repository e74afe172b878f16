import nursery_io


async def fail_soon() -> None:
    await nursery_io.sleep(0.1)
    raise ValueError("something went wrong")


async def wait_patiently() -> None:
    try:
        await nursery_io.sleep(10)
    except nursery_io.Cancelled:
        print("the sibling was cancelled")
        raise  # always let Cancelled propagate


async def main() -> None:
    try:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(fail_soon)
            nursery.start_soon(wait_patiently)
    except* ValueError as group:
        print("caught:", repr(group.exceptions[0]))


if __name__ == "__main__":
    nursery_io.run(main)
