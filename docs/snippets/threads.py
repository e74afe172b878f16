import hashlib
import time

import nursery_io


def blocking_hash(data: bytes, rounds: int) -> str:
    # Stands in for any call that blocks: a C library, a sync client, heavy CPU work.
    digest = data
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def blocking_with_progress(steps: int) -> None:
    for step in range(steps):
        time.sleep(0.01)
        # Call back into the run from the worker thread.
        nursery_io.from_thread.run_sync(print, f"step {step + 1} of {steps}")


async def ticker() -> None:
    for _ in range(3):
        print("the run keeps going")
        await nursery_io.sleep(0.01)


async def main() -> None:
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(ticker)
        result = await nursery_io.to_thread.run_sync(blocking_hash, b"data", 50_000)
        print("hash:", result)

    await nursery_io.to_thread.run_sync(blocking_with_progress, 2)

    # At most this many threads run at once for to_thread.run_sync (40 by default).
    limiter = nursery_io.to_thread.current_default_thread_limiter()
    print("default thread limit:", limiter.total_tokens)

    # Your own limiter bounds one kind of call, e.g. requests to a slow service.
    two_at_a_time = nursery_io.CapacityLimiter(2)

    async def hash_in_thread(n: int) -> None:
        digest = await nursery_io.to_thread.run_sync(
            blocking_hash, bytes([n]), 1000, limiter=two_at_a_time
        )
        print(f"hash of {n}: {digest}")

    async with nursery_io.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(hash_in_thread, n)


if __name__ == "__main__":
    nursery_io.run(main)
