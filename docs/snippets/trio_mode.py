import nursery_io

nursery_io.install_as_trio()  # first thing: before anything imports trio

import sniffio  # noqa: E402
import trio  # noqa: E402  (this is nursery_io from here on)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0.01)
    print("trio is nursery_io:", trio is nursery_io)
    print("sniffio says:", sniffio.current_async_library())


trio.run(main)
