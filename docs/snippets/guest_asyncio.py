import asyncio

import outcome

import nursery_io


async def guest_main() -> str:
    # Runs in nursery_io, inside asyncio's loop; asyncio keeps running meanwhile.
    with nursery_io.move_on_after(0.05):
        await nursery_io.sleep_forever()
    return "guest finished"


async def host_main() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[outcome.Outcome[str]] = loop.create_future()
    nursery_io.lowlevel.start_guest_run(
        guest_main,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=done.set_result,
        host_uses_signal_set_wakeup_fd=True,  # asyncio may use signal.set_wakeup_fd
    )
    await asyncio.sleep(0.01)  # asyncio code runs while the guest sleeps
    print((await done).unwrap())


if __name__ == "__main__":
    asyncio.run(host_main())
