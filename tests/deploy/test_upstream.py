"""How `picaco serve` reaches its target (picaco/deploy/upstream.py), against a hand-written HTTP server
that answers in ways a real target may: kept-alive or not, chunked, ending the body with the connection,
closing an idle connection, or never answering."""

from __future__ import annotations

import asyncio

import pytest

from picaco.deploy.upstream import UPSTREAMS, FastUpstream, UpstreamError, UpstreamTimeout


async def serve(replies: list[bytes | None], seen: list[bytes], close_after_each: bool = False):
    """A server answering the i-th request with replies[i] (None: read it and never answer)."""
    count = 0

    async def handle(reader, writer):
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                seen.append(head + await reader.readexactly(length))
                reply = replies[count]
                count += 1
                if reply is None:
                    await asyncio.sleep(30)
                    return
                writer.write(reply)
                await writer.drain()
                if close_after_each or b"connection: close" in reply.lower() or b"content-length" not in reply.lower() \
                        and b"chunked" not in reply.lower():
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("kind", list(UPSTREAMS))
def test_post_reads_the_reply_and_keeps_the_connection(kind):
    async def main():
        seen: list[bytes] = []
        server, url = await serve([ok(b'{"a": 1}'), ok(b'{"b": 2}')], seen)
        up = UPSTREAMS[kind](url, {"authorization": "Bearer k"}, timeout_s=5)
        try:
            for expected in (b'{"a": 1}', b'{"b": 2}'):
                resp = await up.post("chat/completions", b'{"x": 1}')
                assert resp.status == 200 and resp.header("content-type") == "application/json"
                assert await resp.read() == expected
                await resp.aclose()
        finally:
            await up.aclose()
            server.close()
        assert all(s.startswith(b"POST /v1/chat/completions HTTP/1.1") and b"authorization: bearer k" in s.lower()
                   and s.endswith(b'{"x": 1}') for s in seen)
        return len(seen)

    assert asyncio.run(main()) == 2


def test_chunked_and_connection_delimited_bodies():
    chunked = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
               b"8\r\ndata: 1\n\r\n8\r\ndata: 2\n\r\n0\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"

    async def main():
        server, url = await serve([chunked, until_close], [])
        up = FastUpstream(url, {}, timeout_s=5)
        try:
            resp = await up.post("x", b"{}")
            assert [c async for c in resp.chunks()] == [b"data: 1\n", b"data: 2\n"]
            await resp.aclose()
            resp = await up.post("x", b"{}")
            assert await resp.read() == b"all of it"
            await resp.aclose()
        finally:
            await up.aclose()
            server.close()

    asyncio.run(main())


def test_an_idle_connection_the_target_closed_is_replaced():
    async def main():
        seen: list[bytes] = []
        server, url = await serve([ok(b"1"), ok(b"2")], seen, close_after_each=True)
        up = FastUpstream(url, {}, timeout_s=5)
        try:
            for expected in (b"1", b"2"):
                resp = await up.post("x", b"{}")
                assert await resp.read() == expected
                await resp.aclose()
                await asyncio.sleep(0.05)  # the server has closed the kept-alive connection by now
        finally:
            await up.aclose()
            server.close()
        return len(seen)

    assert asyncio.run(main()) == 2  # each request reached the target once


def test_timeout_and_unreachable_are_errors_of_their_own():
    async def main():
        server, url = await serve([None], [])
        up = FastUpstream(url, {}, timeout_s=0.3)
        try:
            with pytest.raises(UpstreamTimeout):
                await up.post("x", b"{}")
        finally:
            await up.aclose()
            server.close()
        server, url = await serve([], [])
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamError) as err:
            await FastUpstream(url, {}, timeout_s=1).post("x", b"{}")
        assert not isinstance(err.value, UpstreamTimeout)

    asyncio.run(main())
