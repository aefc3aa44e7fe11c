"""How `picaco serve` reaches its target: one POST at a time over a pool of kept-alive connections.

Two implementations of one small interface (`post(path, body)` -> a response with `status`, `headers`,
`read()`, `chunks()`, `aclose()`; transport failures raise UpstreamError, timeouts UpstreamTimeout):

- `FastUpstream` (default): HTTP/1.1 over asyncio streams with httptools' C parser. bench/serve.py
  measured httpx.AsyncClient at ~1 ms of CPU per call in the serve process, httpcore's pool at ~0.5 ms,
  this at ~0.06 ms. It speaks plain HTTP/1.1 (TLS for https:// targets), nothing else: no proxies from the
  environment, no HTTP/2, no redirects (a target API answers in place).
- `HttpxUpstream`: httpx.AsyncClient, for a target reached through an HTTP(S) proxy (`--upstream httpx`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from urllib.parse import urlsplit

import httptools
import httpx

READ_SIZE = 65536


class UpstreamError(Exception):
    """The target could not be reached, or its reply broke off."""


class UpstreamTimeout(UpstreamError):
    pass


class _Conn:
    """One connection and the parser of the reply in progress (httptools calls the on_* methods)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reset()

    def reset(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.headers_done = self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def close(self) -> None:
        self.writer.close()


class FastResponse:
    def __init__(self, upstream: "FastUpstream", conn: _Conn) -> None:
        self._up, self._conn = upstream, conn
        self.status = conn.parser.get_status_code()
        self.headers = conn.headers
        self._length_delimited = any(k in ("content-length", "transfer-encoding") for k, _ in conn.headers)
        self._closed = False

    def header(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.headers if k == name), default)

    async def chunks(self):
        conn = self._conn
        while True:
            while conn.body:
                yield conn.body.popleft()
            if conn.complete:
                return
            data = await self._up._read(conn)
            if not data:
                if not self._length_delimited:  # a body that ends with the connection
                    conn.complete = True
                    continue
                raise UpstreamError("the target closed the connection before the reply was complete")
            self._up._feed(conn, data)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn.complete and self._length_delimited and conn.parser.should_keep_alive():
            self._up._release(conn)
        else:
            conn.close()


class FastUpstream:
    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float, max_connections: int = 256) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"target URL must be http(s)://host[:port]/path, got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host_header = self._host if default_port else f"{self._host}:{self._port}"
        if ":" in self._host:
            host_header = f"[{self._host}]" + ("" if default_port else f":{self._port}")
        fixed = {"host": host_header, **{k.lower(): v for k, v in headers.items()}}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._timeout = timeout_s
        self._connect_timeout = min(10.0, timeout_s)
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.where = base_url

    async def _read(self, conn: _Conn) -> bytes:
        try:
            return await asyncio.wait_for(conn.reader.read(READ_SIZE), self._timeout)
        except asyncio.TimeoutError:
            conn.close()
            raise UpstreamTimeout(f"no reply within {self._timeout:g} s") from None
        except OSError as exc:
            conn.close()
            raise UpstreamError(str(exc) or type(exc).__name__) from None

    @staticmethod
    def _feed(conn: _Conn, data: bytes) -> None:
        try:
            conn.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            conn.close()
            raise UpstreamError(f"the target's reply is not HTTP/1.1 ({exc})") from None

    def _release(self, conn: _Conn) -> None:
        conn.reset()
        self._idle.append(conn)

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=READ_SIZE),
                self._connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"no connection within {self._connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(exc.strerror or str(exc) or type(exc).__name__) from None
        return _Conn(reader, writer)

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> FastResponse:
        request = (f"POST {self._prefix}/{path} HTTP/1.1\r\n".encode("latin-1") + self._head +
                   f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        async with self._slots:
            # a kept-alive connection the target has closed meanwhile fails before any reply byte: then once
            # more on a new connection (the target never saw the request)
            while True:
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                try:
                    conn.writer.write(request)
                    while not conn.headers_done:
                        data = await self._read(conn)
                        if not data:
                            conn.close()
                            if reused:
                                break
                            raise UpstreamError("the target closed the connection without a reply")
                        self._feed(conn, data)
                except UpstreamTimeout:
                    raise
                except UpstreamError:
                    if reused and not conn.headers_done:
                        continue
                    raise
                else:
                    if conn.headers_done:
                        return FastResponse(self, conn)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class HttpxResponse:
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = [(k.lower(), v) for k, v in resp.headers.items()]

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._resp.headers.get(name, default)

    async def chunks(self):
        try:
            async for chunk in self._resp.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc)) from None
        except httpx.TransportError as exc:
            raise UpstreamError(str(exc) or type(exc).__name__) from None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxUpstream:
    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float, max_connections: int = 256) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers, limits=limits,
                                         timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))
        self.where = base_url

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> HttpxResponse:
        request = self._client.build_request("POST", path, content=body, headers={"content-type": content_type})
        try:
            return HttpxResponse(await self._client.send(request, stream=True))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise UpstreamError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        await self._client.aclose()


UPSTREAMS: dict[str, type[FastUpstream] | type[HttpxUpstream]] = {"fast": FastUpstream, "httpx": HttpxUpstream}
