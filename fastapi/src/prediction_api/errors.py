"""One error body for every 4xx/5xx the service produces itself:

    {"detail": [{"loc": ["body", 3, "island"], "row": 3, "field": "island",
                 "msg": "expected a string or null, got number", "type": "type_error"}]}

``loc`` follows FastAPI's validation errors; ``row`` (0-based) and ``field`` are null where
they do not apply (a malformed body, a missing key, an auth failure).

``POST /invocations`` answers as ``mlflow models serve`` does instead:
``{"error_code": "BAD_REQUEST", "message": "..."}`` (``mlflow_error_body``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from starlette.responses import Response

# A batch of 10,000 bad rows would otherwise produce a response far larger than the request,
# and collecting one entry per bad item of a hostile body would cost gigabytes.
MAX_PROBLEMS = 1000

T = TypeVar("T")


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


class Problems:
    """The problems found in one request: the first MAX_PROBLEMS are kept, the rest only
    counted, so a body with a million bad items costs no more memory than one with a
    thousand."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.omitted = 0

    def __bool__(self) -> bool:
        return bool(self.items)

    def append(self, item: dict[str, Any]) -> None:
        self.add([item], lambda same: same)

    def add(self, found: Sequence[T], describe: Callable[[T], dict[str, Any]]) -> None:
        """One problem ``describe(item)`` per item of ``found`` while there is room; the
        others are counted without being described."""
        room = max(0, MAX_PROBLEMS - len(self.items))
        self.items.extend(map(describe, found[:room]))
        self.omitted += max(0, len(found) - room)


class ApiError(Exception):
    """An error answered with ``status`` and the standard body; ``omitted`` counts problems
    found but not listed."""

    status = 400

    def __init__(
        self,
        problems: Iterable[dict[str, Any]],
        status: int | None = None,
        headers: dict[str, str] | None = None,
        omitted: int = 0,
        error_code: str | None = None,
    ) -> None:
        self.problems = list(problems)
        self.error_code = error_code  # MLflow's code on /invocations; None: from the status
        self.omitted = omitted
        if status is not None:
            self.status = status
        self.headers = headers
        super().__init__("; ".join(str(p["msg"]) for p in self.problems[:3]))

    def __reduce__(self) -> tuple[Any, ...]:  # from the decoder process, whole
        return type(self), (self.problems, self.status, self.headers, self.omitted, self.error_code)


class InputError(ApiError):
    """Input that does not fit the model's features (422)."""

    status = 422


def error_body(problems: Sequence[dict[str, Any]], omitted: int = 0) -> bytes:
    """The JSON body: at most MAX_PROBLEMS entries, then one saying how many more problems
    (beyond those, plus ``omitted``) were found but not listed."""
    shown = list(problems[:MAX_PROBLEMS])
    left = len(problems) - len(shown) + omitted
    if left:
        shown.append(problem(("body",), f"{left} more problems not listed", "truncated"))
    return orjson.dumps({"detail": shown})


BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"


def mlflow_error(message: str, code: str = BAD_REQUEST, status: int = 400) -> ApiError:
    """An ``/invocations`` error with MLflow's ``code``."""
    return ApiError([problem(("body",), message)], status, error_code=code)


# MLflow's error codes for the statuses the service answers (mlflow.exceptions).
MLFLOW_CODES = {
    401: "UNAUTHENTICATED",
    413: "RESOURCE_EXHAUSTED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


def mlflow_error_body(error: ApiError) -> bytes:
    """``error`` as MLflow's scoring server writes an error: its code and one message."""
    messages = [str(p["msg"]) for p in error.problems[:MAX_PROBLEMS]]
    left = len(error.problems) - len(messages) + error.omitted
    if left:
        messages.append(f"{left} more problems not listed")
    code = error.error_code or MLFLOW_CODES.get(error.status, "BAD_REQUEST")
    return orjson.dumps({"error_code": code, "message": "; ".join(messages)})


def error_response(
    status: int,
    problems: Sequence[dict[str, Any]],
    headers: dict[str, str] | None = None,
    omitted: int = 0,
) -> Response:
    return Response(
        error_body(problems, omitted),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
