"""The simulator server's request body: read within a size limit, then parsed as one JSON object.

A client that sends a huge body must not make the server buffer all of it (a 300 MB body once took 42 s
and 1.6 GB), and a body nested deeper than the JSON parser's recursion limit must be a 400 like any other
bad body, not a 500 with a traceback in the server's log.
"""

from __future__ import annotations

import json
from typing import Any

MIB = 1 << 20


class BodyTooLarge(Exception):
    """The body is over the limit: `declared` is its Content-Length when the client sent one."""

    def __init__(self, limit: int, declared: int | None) -> None:
        size = f" of {declared} bytes" if declared is not None else ""
        super().__init__(f"the request body{size} is over this server's limit of {limit} bytes (--max-body-mb)")


class BodyNotJSON(ValueError):
    """The body is not one JSON object; `str()` says why in a line."""


async def read_body(request, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed `limit` bytes.

    A declared Content-Length over the limit is refused before a byte of the body is read (a client
    waiting on `Expect: 100-continue` then never sends it); a chunked body is refused at the chunk that
    crosses the limit, so at most `limit` bytes plus one chunk are ever held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise BodyNotJSON("the request body nests JSON too deeply to parse") from None
    except ValueError:
        raise BodyNotJSON("the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BodyNotJSON("the request body must be a JSON object")
    return payload
