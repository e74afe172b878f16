import nursery_io


async def slow_lookup() -> str:
    await nursery_io.sleep(5)
    return "found it"


async def main() -> None:
    # move_on_after: give up quietly when the time is up.
    with nursery_io.move_on_after(0.1) as scope:
        await slow_lookup()
    print("gave up quietly:", scope.cancelled_caught)

    # fail_after: give up with an exception instead.
    try:
        with nursery_io.fail_after(0.1):
            await slow_lookup()
    except nursery_io.TooSlowError:
        print("gave up loudly")

    # A plain CancelScope, cancelled by another task.
    async with nursery_io.open_nursery() as nursery:
        with nursery_io.CancelScope() as scope:
            nursery.start_soon(cancel_later, scope)
            await nursery_io.sleep_forever()
    print("cancelled by a sibling:", scope.cancelled_caught)

    # Deadlines nest: the caller's 1 s limit applies inside time_left() too.
    with nursery_io.move_on_after(1.0):
        print(f"about {await time_left():.0f} s left")

    # A shielded scope keeps running while its surroundings are cancelled:
    # useful for cleanup that must finish.
    with nursery_io.move_on_after(0.1):
        try:
            await nursery_io.sleep_forever()
        finally:
            with nursery_io.CancelScope(shield=True):
                await nursery_io.sleep(0.05)
                print("cleanup finished despite the cancellation")


async def time_left() -> float:
    # Its own, generous timeout can't extend the deadline it was called under.
    with nursery_io.move_on_after(10.0):
        left = nursery_io.current_effective_deadline() - nursery_io.current_time()
    return left


async def cancel_later(scope: nursery_io.CancelScope) -> None:
    await nursery_io.sleep(0.1)
    scope.cancel()


if __name__ == "__main__":
    nursery_io.run(main)
