"""picaco.sim.request_body: a body read within its limit (refused from its headers when they say it is too
large), and parsed as one JSON object or refused in one line."""

from __future__ import annotations

import pytest

from picaco.sim.request_body import BodyNotJSON, BodyTooLarge, parse_json_object, read_body


class FakeRequest:
    """What read_body uses of a Starlette request: headers and the body's chunks; counts chunks read."""

    def __init__(self, chunks: list[bytes], content_length: int | None = None) -> None:
        self.headers = {} if content_length is None else {"content-length": str(content_length)}
        self._chunks, self.read = chunks, 0

    async def stream(self):
        for chunk in self._chunks:
            self.read += 1
            yield chunk


async def test_a_body_within_the_limit_is_read_whole():
    request = FakeRequest([b'{"a": ', b"1}"], content_length=8)
    assert await read_body(request, limit=8) == b'{"a": 1}'


async def test_a_declared_length_over_the_limit_is_refused_before_reading():
    request = FakeRequest([b"x" * 10], content_length=10)
    with pytest.raises(BodyTooLarge, match="body of 10 bytes is over this server's limit of 9 bytes"):
        await read_body(request, limit=9)
    assert request.read == 0


async def test_a_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit():
    request = FakeRequest([b"x" * 4, b"x" * 4, b"x" * 4, b"x" * 4])
    with pytest.raises(BodyTooLarge, match="limit of 10 bytes") as info:
        await read_body(request, limit=10)
    assert request.read == 3 and "of None" not in str(info.value)


def test_parse_gives_the_object():
    assert parse_json_object(b'{"model": "m", "n": 2}') == {"model": "m", "n": 2}


@pytest.mark.parametrize("raw, match", [
    (b"[1, 2]", "must be a JSON object"),
    (b'{"a": ', "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests JSON too deeply"),
])
def test_anything_else_is_one_line_saying_why(raw, match):
    with pytest.raises(BodyNotJSON, match=match):
        parse_json_object(raw)
