import nursery_io as trio


async def child(n: int, send_channel: trio.MemorySendChannel[int]) -> None:
    async with send_channel:
        await trio.sleep(0.01 * n)
        await send_channel.send(n * n)


async def main() -> None:
    send_channel, receive_channel = trio.open_memory_channel[int](0)
    async with trio.open_nursery() as nursery:
        async with send_channel:
            for n in range(3):
                nursery.start_soon(child, n, send_channel.clone())
        async with receive_channel:
            squares = [value async for value in receive_channel]
    print("squares:", squares)

    # The names that mention Trio exist too, as aliases of neutral ones.
    assert trio.lowlevel.current_trio_token() is trio.lowlevel.current_token()
    assert trio.lowlevel.in_trio_task() and trio.lowlevel.in_task()
    assert trio.TrioInternalError is trio.InternalError


if __name__ == "__main__":
    trio.run(main)
