"""A Starlette app served by hypercorn's trio worker, under a bounded loopback load.

Written for trio; run on real trio and in trio mode. Prints a JSON report: what every
request got back (so the two runs can be compared) and the requests per second.

    python starlette_load.py [--requests N] [--concurrency C]
"""

import argparse
import json
import sys
import time

import httpx
import sniffio
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def item(request: Request) -> JSONResponse:
    number = int(request.path_params["number"])
    return JSONResponse({"number": number, "square": number * number})


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "library": sniffio.current_async_library()})


async def stream(request: Request) -> StreamingResponse:
    async def chunks():
        for index in range(10):
            await trio.sleep(0)
            yield f"chunk{index};".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


application = Starlette(
    routes=[
        Route("/", hello),
        Route("/items/{number:int}", item),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
    ]
)


async def main(requests: int, concurrency: int) -> dict[str, object]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    answers: list[object] = [None] * requests
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: serve(
                application, config, shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=bound[0], limits=limits) as client:
            next_request = iter(range(requests))

            async def worker() -> None:
                for number in next_request:
                    kind = number % 4
                    if kind == 0:
                        response = await client.get("/")
                        answers[number] = response.text
                    elif kind == 1:
                        response = await client.get(f"/items/{number}")
                        answers[number] = response.json()
                    elif kind == 2:
                        response = await client.post("/echo", content=b"x" * number)
                        answers[number] = response.json()
                    else:
                        response = await client.get("/stream")
                        answers[number] = response.text
                    assert response.status_code == 200, response

            started = time.perf_counter()
            async with trio.open_nursery() as workers:
                for _ in range(concurrency):
                    workers.start_soon(worker)
            elapsed = time.perf_counter() - started
        shutdown.set()
    return {
        "runtime": trio.__name__,
        "answers": answers,
        "requests_per_second": requests / elapsed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    arguments = parser.parse_args()
    json.dump(trio.run(main, arguments.requests, arguments.concurrency), sys.stdout)
