"""Test upstreams for `picaco serve`: the simulator's app with every request body recorded, and a target
that streams its chunks one at a time, each only when the test lets it go."""

from __future__ import annotations

import json
import threading
import time

import uvicorn

from picaco.sim.server import SimApp, SimServerConfig
from picaco.sim.serving import bind, url_of


class AsgiThread:
    """Any ASGI app under uvicorn in a daemon thread, on a free loopback port."""

    def __init__(self, app) -> None:
        self._sock = bind("127.0.0.1", 0)
        self.url = url_of("127.0.0.1", self._sock.getsockname()[1])
        self.base_url = self.url + "/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "test upstream did not start"
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


class RecordingSim:
    """The simulator server's app, with the headers and JSON body of every request kept in `seen`."""

    def __init__(self, config: SimServerConfig) -> None:
        self.sim = SimApp(config)
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.sim(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        self.seen.append({"path": scope["path"], "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                          "body": json.loads(body) if body else None})
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.sim(scope, replay, send)


class GatedStream:
    """A chat target that streams `pieces` as server-sent events, sending piece i + 1 only after the test
    called `release()` once more: a proxy that buffered the stream would deliver nothing."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.gate = threading.Semaphore(0)
        self.sent = 0

    def release(self) -> None:
        self.gate.release()

    async def __call__(self, scope, receive, send) -> None:
        import asyncio

        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i, piece in enumerate(self.pieces):
            if i:
                while not self.gate.acquire(blocking=False):
                    await asyncio.sleep(0.002)
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gated",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.sent = i + 1  # before the send: the client may hold the chunk before send() returns
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
