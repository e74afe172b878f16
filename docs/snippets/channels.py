import nursery_io


async def producer(name: str, send_channel: nursery_io.MemorySendChannel[str]) -> None:
    # `async with` closes this end when the producer is done.
    async with send_channel:
        for i in range(3):
            await send_channel.send(f"{name}: item {i}")


async def consumer(receive_channel: nursery_io.MemoryReceiveChannel[str]) -> None:
    async with receive_channel:
        # The loop ends once every sending end has been closed.
        async for value in receive_channel:
            print("got", value)


async def main() -> None:
    # Buffer size 0: every send waits until a receiver takes the value.
    send_channel, receive_channel = nursery_io.open_memory_channel[str](0)
    async with nursery_io.open_nursery() as nursery:
        # Each producer gets its own clone of the sending end.
        async with send_channel:
            nursery.start_soon(producer, "a", send_channel.clone())
            nursery.start_soon(producer, "b", send_channel.clone())
        nursery.start_soon(consumer, receive_channel)


if __name__ == "__main__":
    nursery_io.run(main)
