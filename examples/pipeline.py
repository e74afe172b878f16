"""A producer → workers → collector pipeline with back-pressure, cancellation and timeouts.

    python examples/pipeline.py --items 200 --workers 8 --timeout 5
    python examples/pipeline.py --job-timeout 0.015      # some jobs now time out

The producer feeds jobs into a bounded memory channel (so it can never run ahead of the
workers by more than the buffer), N workers process them concurrently, and a collector
gathers results. Each job is some simulated work of up to ``--max-cost`` seconds. With
``--job-timeout``, each job also gets its own ``fail_after`` deadline: a job that takes
too long is reported as timed out instead of stalling the pipeline (there is none by
default, so by default every job finishes). The whole run has an overall deadline too
(``--timeout``); when it passes, every task is cancelled and the nursery unwinds cleanly.
Workers share one receive channel; closing works by cloning the send side per producer and
the receive side per worker, so the collector sees end-of-channel exactly when the last
worker finishes.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import nursery_io


@dataclass(frozen=True)
class Job:
    number: int
    cost: float  # seconds of simulated work


@dataclass(frozen=True)
class Result:
    number: int
    outcome: str  # "ok" or "timed out"
    worker: int


async def producer(
    send: nursery_io.MemorySendChannel[Job], items: int, max_cost: float, seed: int
) -> None:
    rng = random.Random(seed)
    async with send:
        for number in range(items):
            # Blocks while the buffer is full: back-pressure from slow workers.
            await send.send(Job(number, rng.uniform(0, max_cost)))


async def worker(
    worker_id: int,
    jobs: nursery_io.MemoryReceiveChannel[Job],
    results: nursery_io.MemorySendChannel[Result],
    job_timeout: float | None,
) -> None:
    async with jobs, results:
        async for job in jobs:
            try:
                # fail_after(inf) never fires: "no per-job timeout" needs no special case.
                with nursery_io.fail_after(math.inf if job_timeout is None else job_timeout):
                    await nursery_io.sleep(job.cost)
            except nursery_io.TooSlowError:
                await results.send(Result(job.number, "timed out", worker_id))
            else:
                await results.send(Result(job.number, "ok", worker_id))


async def collector(results: nursery_io.MemoryReceiveChannel[Result], out: list[Result]) -> None:
    async with results:
        async for result in results:
            out.append(result)


async def run_pipeline(
    items: int,
    workers: int,
    *,
    max_cost: float = 0.01,
    job_timeout: float | None = None,
    overall_timeout: float = 30.0,
    seed: int = 0,
) -> list[Result]:
    """Run the pipeline and return the results (in completion order)."""
    results: list[Result] = []
    job_send, job_receive = nursery_io.open_memory_channel[Job](workers * 2)
    result_send, result_receive = nursery_io.open_memory_channel[Result](0)
    with nursery_io.move_on_after(overall_timeout):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(producer, job_send, items, max_cost, seed)
            async with job_receive, result_send:
                for worker_id in range(workers):
                    nursery.start_soon(
                        worker, worker_id, job_receive.clone(), result_send.clone(), job_timeout
                    )
            nursery.start_soon(collector, result_receive, results)
    return results


def number(
    kind: Callable[[str], float], minimum: float, *, inclusive: bool = True
) -> Callable[[str], float]:
    """An argparse ``type`` that also checks a lower bound, so a bad value is a usage error
    (``--workers 0`` would otherwise end in a traceback from deep inside the run)."""
    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum or (value == minimum and not inclusive) or math.isnan(value):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=number(int, 0), default=200, help="jobs to run")
    parser.add_argument("--workers", type=number(int, 1), default=8)
    parser.add_argument(
        "--max-cost", type=number(float, 0), default=0.02, help="max seconds of work per job"
    )
    parser.add_argument(
        "--job-timeout",
        type=number(float, 0, inclusive=False),
        default=None,
        help="give up on a job after this many seconds (default: no per-job limit)",
    )
    parser.add_argument(
        "--timeout", type=number(float, 0, inclusive=False), default=30.0, help="overall deadline"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = nursery_io.run(
        lambda: run_pipeline(
            args.items,
            args.workers,
            max_cost=args.max_cost,
            job_timeout=args.job_timeout,
            overall_timeout=args.timeout,
        )
    )
    elapsed = time.monotonic() - started
    ok = sum(result.outcome == "ok" for result in results)
    timed_out = len(results) - ok
    print(
        f"{len(results)} of {args.items} jobs finished in {elapsed:.2f} s: "
        f"{ok} ok, {timed_out} timed out"
    )
    if timed_out:
        print(
            f"  timed out: took longer than --job-timeout {args.job_timeout:g} s "
            f"(jobs take up to --max-cost {args.max_cost:g} s)"
        )
    if len(results) < args.items:
        print(
            f"  not finished: the overall deadline (--timeout {args.timeout:g} s) passed "
            f"with {args.items - len(results)} jobs still to do"
        )


if __name__ == "__main__":
    main()
