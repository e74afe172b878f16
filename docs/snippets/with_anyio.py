import anyio
import sniffio

import nursery_io  # noqa: F401  (importing nursery_io registers the anyio backend)


async def worker(n: int, results: list[int]) -> None:
    await anyio.sleep(0.01 * n)
    results.append(n)


async def main() -> None:
    results: list[int] = []
    async with anyio.create_task_group() as task_group:
        for n in range(3):
            task_group.start_soon(worker, n, results)
    print("results:", results)
    print("event loop:", sniffio.current_async_library())


if __name__ == "__main__":
    anyio.run(main, backend="nursery_io")
