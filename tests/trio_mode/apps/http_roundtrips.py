"""An httpx + hypercorn program written for trio; run on real trio and in trio mode.

Prints one JSON document describing what happened, so the two runs can be compared:
concurrent GETs, a large POST, a request cancelled mid-flight, and a client timeout.
"""

import json
import sys

import httpx
import sniffio
import trio
from hypercorn.config import Config
from hypercorn.trio import serve


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path.startswith("/slow"):
        await trio.sleep(5)
    if path.startswith("/items/"):
        reply = path.rsplit("/", 1)[1].encode() * 3
    else:
        reply = b"%d %d" % (len(body), sum(body) % 65521)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": reply})


async def main() -> dict[str, object]:
    report: dict[str, object] = {
        "library": sniffio.current_async_library(),
        "runtime": trio.__name__,
    }
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: serve(
                app, config, shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        base = bound[0]
        async with httpx.AsyncClient(base_url=base) as client:
            results: dict[int, str] = {}

            async def get(number: int) -> None:
                response = await client.get(f"/items/{number}")
                results[number] = f"{response.status_code} {response.text}"

            async with trio.open_nursery() as gets:
                for number in range(20):
                    gets.start_soon(get, number)
            report["gets"] = [results[n] for n in range(20)]

            payload = bytes(range(256)) * 16 * 1024  # 4 MiB
            response = await client.post("/upload", content=payload)
            report["post"] = [response.status_code, response.text]

            with trio.move_on_after(0.2) as scope:
                await client.get("/slow")
            report["cancelled"] = scope.cancelled_caught

            try:
                await client.get("/slow", timeout=0.2)
                report["timeout"] = None
            except httpx.TimeoutException as exc:
                report["timeout"] = type(exc).__name__

            response = await client.get("/items/after")
            report["after"] = [response.status_code, response.text]
        shutdown.set()
    return report


if __name__ == "__main__":
    json.dump(trio.run(main), sys.stdout)
