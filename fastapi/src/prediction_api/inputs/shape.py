"""A large body's structure, bounded before anything is built from it.

simdjson parses a body into its own buffers (a few milliseconds for 10 MB) without creating
Python objects; the sizes of the containers where records, rows and columns live are read from
there. A body with more rows than ``max_rows`` or a record, row or column list wider than
``max_keys`` is refused before the typed decoder or the parser would build millions of objects
from it (hundreds of milliseconds and of megabytes for 10 MB of keys). Smaller bodies, and
malformed ones, go on to the usual decoding, which reports their problems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simdjson

from prediction_api.errors import InputError, mlflow_error, problem
from prediction_api.inputs.tables import FORMATS

# Bodies up to this size cannot hold enough items to matter; they skip the check.
CHECKED_BYTES = 32 * 1024
# A record with this many keys beyond twice the model's features is refused unread: no client
# sends so many stray keys by mistake.
WIDTH_MARGIN = 100


def max_width(features: int) -> int:
    """The most keys a record (or columns a table) may have for a model of ``features``."""
    return 2 * features + WIDTH_MARGIN


class Bounds:
    """The limits for a model of ``features`` features: ``max_rows`` rows, and ``max_width``
    keys or columns."""

    def __init__(self, max_rows: int, features: int) -> None:
        self.max_rows = max_rows
        self.features = features
        self.max_keys = max_width(features)

    def check_predict(self, body: bytes) -> None:
        """``POST /predict``: one record or a list of records; InputError (422) naming the
        first container out of bounds."""
        document = _parsed(body)
        found, kind = None, "too_wide"
        if isinstance(document, simdjson.Object):
            found = self._wide(document, "/")
        elif isinstance(document, simdjson.Array):
            found = self._long(document, "/")
            if found is not None:
                kind = "too_long"
            else:
                found = _first(document, "", self._wide)
        if found is not None:
            raise InputError([problem(("body",), found, kind)])

    def check_invocations(self, body: bytes) -> None:
        """``POST /invocations`` (JSON): MLflow's formats; MLflow's 400 naming the first
        container out of bounds."""
        document = _parsed(body)
        if not isinstance(document, simdjson.Object):
            return
        found = self._wide(document, "/")
        for name in FORMATS:
            if found is not None:
                break
            value, where = document.get(name), f"/{name}"
            if name == "dataframe_split" and isinstance(value, simdjson.Object):
                data = value.get("data")
                found = (
                    self._wide(value.get("columns"), f"{where}/columns")
                    or self._long(value.get("index"), f"{where}/index")
                    or self._long(data, f"{where}/data")
                    or _first(data, f"{where}/data", self._wide)
                )
            elif isinstance(value, simdjson.Array):  # records
                found = self._long(value, where) or _first(value, where, self._wide)
            elif isinstance(value, simdjson.Object):  # "inputs" as columns
                found = self._wide(value, where) or _first(value, where, self._long)
        if found is not None:
            raise mlflow_error(found)

    def _wide(self, container: Any, pointer: str) -> str | None:
        size = _size(container)
        if size <= self.max_keys:
            return None
        return (
            f"{pointer} holds {size} items; the model has {self.features} features, and more "
            f"than {self.max_keys} keys or columns are refused without reading them"
        )

    def _long(self, container: Any, pointer: str) -> str | None:
        size = _size(container)
        if size <= self.max_rows:
            return None
        return (
            f"{pointer} holds {size} rows; more than {self.max_rows} per request are refused "
            "without reading them"
        )


def _parsed(body: bytes) -> Any:
    if len(body) <= CHECKED_BYTES:
        return None
    try:
        return simdjson.Parser().parse(body)
    except ValueError:
        pass
    # MLflow's clients may send NaN and Infinity tokens, which JSON lacks: read as null they
    # keep the structure (inside a string the text changes, not the string's place).
    readable = body.replace(b"-Infinity", b"null").replace(b"Infinity", b"null")
    try:
        return simdjson.Parser().parse(readable.replace(b"NaN", b"null"))
    except ValueError:  # malformed JSON or invalid UTF-8: the decoders report them
        return None


def _size(container: Any) -> int:
    """Items of a parsed array or object; 0 for anything else."""
    return len(container) if isinstance(container, simdjson.Array | simdjson.Object) else 0


def _first(container: Any, pointer: str, check: Callable[[Any, str], str | None]) -> str | None:
    """What ``check`` finds in the first item of ``container`` (an array, or an object's
    values) it refuses."""
    if isinstance(container, simdjson.Object):  # its values as proxies, not converted
        items: Any = ((key, container[key]) for key in container)
    elif isinstance(container, simdjson.Array):
        items = enumerate(container)
    else:
        return None
    for name, item in items:
        found = check(item, f"{pointer}/{name}")
        if found is not None:
            return found
    return None
