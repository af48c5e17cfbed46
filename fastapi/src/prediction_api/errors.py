"""One error body for every 4xx/5xx the service produces itself:

    {"detail": [{"loc": ["body", 3, "island"], "row": 3, "field": "island",
                 "msg": "expected a string or null, got number", "type": "type_error"}]}

``loc`` follows FastAPI's validation errors; ``row`` (0-based) and ``field`` are null where
they do not apply (a malformed body, a missing key, an auth failure).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from starlette.responses import Response

# A batch of 10,000 bad rows would otherwise produce a response far larger than the request.
MAX_PROBLEMS = 1000


def _text(value: Any) -> Any:
    """Strings as valid UTF-8: a lenient JSON parser lets lone surrogates through."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def problem(
    loc: Sequence[Any],
    msg: str,
    kind: str = "value_error",
    row: int | None = None,
    field: str | None = None,
) -> dict[str, Any]:
    return {
        "loc": [_text(part) for part in loc],
        "row": row,
        "field": _text(field),
        "msg": _text(msg),
        "type": kind,
    }


class ApiError(Exception):
    """An error answered with ``status`` and the standard body."""

    status = 400

    def __init__(
        self,
        problems: Iterable[dict[str, Any]],
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.problems = list(problems)
        if status is not None:
            self.status = status
        self.headers = headers
        super().__init__("; ".join(str(p["msg"]) for p in self.problems[:3]))


class InputError(ApiError):
    """Input that does not fit the model's features (422)."""

    status = 422


def error_body(problems: Sequence[dict[str, Any]]) -> bytes:
    """The JSON body, at most MAX_PROBLEMS entries plus one saying how many were left out."""
    shown = list(problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        left = len(problems) - MAX_PROBLEMS
        shown.append(problem(("body",), f"{left} more problems not shown", "truncated"))
    return orjson.dumps({"detail": shown})


def error_response(
    status: int, problems: Sequence[dict[str, Any]], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        error_body(problems), status_code=status, headers=headers, media_type="application/json"
    )


def simple_error(
    status: int, loc: Sequence[Any], msg: str, kind: str, headers: dict[str, str] | None = None
) -> Response:
    return error_response(status, [problem(loc, msg, kind)], headers)
