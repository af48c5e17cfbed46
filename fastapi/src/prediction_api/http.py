"""Request plumbing shared by the routes: bounded body reading, JSON parsing, API keys."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from prediction_api.errors import ApiError, problem

Headers = list[tuple[bytes, bytes]]


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case) in ASGI ``scope["headers"]``."""
    for key, value in headers:
        if key == name:
            return value
    return None


def declared_length(headers: Headers, limit: int) -> int | None:
    """The body's declared ``Content-Length`` (None when it is sent without one); 400 when it
    is not a number, 413 when it is over ``limit`` bytes."""
    declared = header(headers, b"content-length")
    if declared is None:
        return None
    try:
        size = int(declared)
    except ValueError:
        raise ApiError([problem(("header", "content-length"), "not a number")], 400) from None
    if size > limit:
        raise _too_large(limit)
    return size


async def _next_chunk(receive: Receive, received: int, limit: int) -> tuple[bytes, bool, int]:
    """The body's next chunk, whether more follows, and the bytes received with it; 413 when
    they come to more than ``limit``."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    chunk: bytes = message.get("body", b"")
    received += len(chunk)
    if received > limit:
        raise _too_large(limit)
    return chunk, message.get("more_body", False), received


async def read_until(receive: Receive, size: int, limit: int) -> tuple[bytes, bool]:
    """The request body as it arrives, up to its end or to the first chunk that takes it past
    ``size`` bytes: the bytes read, and whether they are the whole body. A body past ``limit``
    bytes is refused (413)."""
    chunks: list[bytes] = []
    received = 0
    while True:
        chunk, more, received = await _next_chunk(receive, received, limit)
        chunks.append(chunk)
        if not more or received > size:
            return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), not more


async def copy_body(
    receive: Receive,
    limit: int,
    write: Callable[[bytes], object],
    pace: Callable[[int], Awaitable[None]],
    received: int = 0,
) -> None:
    """Hand the rest of the request body (``received`` bytes of it already read) to ``write``
    chunk by chunk as it arrives, refusing (413) a body that grows past ``limit`` bytes, and
    awaiting ``pace(chunk's size)`` before reading more."""
    while True:
        chunk, more, received = await _next_chunk(receive, received, limit)
        write(chunk)
        if not more:
            return
        await pace(len(chunk))


# Other traffic counts as present for this long after a request that is not large: between
# one-row requests the service often has none of them in flight for an instant (answered, the
# next not read yet), and the large bodies read in those instants went unpaced: beside one-row
# requests at concurrency 8, 5-24 MiB/s more than the 16 MiB/s paced.
OTHER_TRAFFIC_SECONDS = 0.1


class LargeBodyPacer:
    """Large bodies yield to the rest of the traffic: while other requests are in flight or
    came in the last OTHER_TRAFFIC_SECONDS, the large bodies being read share
    ``bytes_per_second`` (0: no limit), and what is not read yet waits in the clients' sockets
    (TCP slows the senders down); with no other traffic they are read at full speed. Moving
    megabytes costs the machine's cores (copies in the kernel, the server's loop, the senders
    themselves) whoever reads them, so this is what keeps a stream of them from slowing every
    prediction.

    The service counts its requests in flight in ``requests``, marks the large ones with
    ``large()`` and notes each of the others with ``other()``; ``pace`` is ``copy_body``'s."""

    def __init__(self, bytes_per_second: float) -> None:
        self.bytes_per_second = bytes_per_second
        self.requests = 0
        self._large = 0
        self._other_at = -math.inf  # when the last request that is not large came
        self._free_at = 0.0  # when the bytes read so far have had their share of the rate

    @contextlib.contextmanager
    def large(self) -> Iterator[None]:
        self._large += 1
        try:
            yield
        finally:
            self._large -= 1

    def other(self) -> None:
        """A request that is not large is being answered."""
        self._other_at = time.monotonic()

    async def pace(self, size: int) -> None:
        """Wait until ``size`` more bytes fit in the rate, if there is other traffic."""
        if not self.bytes_per_second:
            return
        now = time.monotonic()
        if self.requests <= self._large and now - self._other_at >= OTHER_TRAFFIC_SECONDS:
            return
        self._free_at = max(self._free_at, now) + size / self.bytes_per_second
        await asyncio.sleep(self._free_at - now)


def _too_large(limit: int) -> ApiError:
    return ApiError([problem(("body",), f"request body exceeds {limit} bytes", "too_large")], 413)


def parse_json(body: bytes) -> Any:
    """Parse with orjson; on failure retry with the standard library, which also reads the
    ``NaN``/``Infinity`` tokens some encoders write, so the validator can name the field that
    holds them. Anything else is a 400 naming where parsing stopped."""
    if not body:
        raise ApiError([problem(("body",), "empty body: send JSON", "json_invalid")], 400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(
                [problem(("body",), f"malformed JSON: {error}", "json_invalid")], 400
            ) from None


class ApiKeys:
    """Checks ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` against the configured
    keys in constant time (every key is compared, each with ``hmac.compare_digest``)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, headers: Headers) -> None:
        if not self._keys:
            return
        given = _presented_key(headers)
        if given is None:
            raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise _unauthorized("invalid API key")


def _presented_key(headers: Headers) -> bytes | None:
    authorization = header(headers, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip()
    key = header(headers, b"x-api-key")
    return key.strip() if key and key.strip() else None


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        [problem(("header", "authorization"), message, "unauthorized")],
        401,
        headers={"WWW-Authenticate": "Bearer"},
    )
