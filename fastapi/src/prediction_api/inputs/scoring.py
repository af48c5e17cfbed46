"""``POST /invocations``: MLflow's scoring protocol, taken as ``mlflow models serve`` takes it.

Content types: ``application/json`` (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``; ``params`` and other keys are ignored), ``text/csv`` and
``application/vnd.apache.parquet``, UTF-8 only; anything else is 415. Columns the model does
not know are ignored. Values are converted to the signature's types as MLflow's schema
enforcement converts them (``conversions``), and what it refuses is refused.

Errors are MLflow's: ``{"error_code": ..., "message": ...}`` with status 400 (``BAD_REQUEST``;
``INVALID_PARAMETER_VALUE`` for a missing column), and the message names the column, row and
value. A body of well-typed values is decoded in one pass by a typed decoder built from the
features; anything else is parsed again as plain JSON and converted column by column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import orjson

from prediction_api.errors import INVALID_PARAMETER_VALUE, mlflow_error
from prediction_api.features import Feature, Kind
from prediction_api.inputs.conversions import Converted, Table, convert_table
from prediction_api.inputs.shape import Bounds
from prediction_api.inputs.tables import CSV, FORMATS, frame_table, json_table, split_table

JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
CONTENT_TYPES = (JSON, CSV, PARQUET)
_STRING_TYPES = frozenset({str, type(None)})


def media_type(content_type: bytes | None) -> str:
    """The media type of a Content-Type header; 415 unless MLflow's server takes it."""
    if content_type is None:
        raise mlflow_error(f"send a Content-Type header, one of {list(CONTENT_TYPES)}", status=415)
    mime, *parameters = (part.strip() for part in content_type.decode("latin-1").split(";"))
    values = dict(p.partition("=")[::2] for p in parameters)
    if values.pop("charset", "utf-8").strip('"').lower() != "utf-8":
        raise mlflow_error("only UTF-8 bodies are supported", status=415)
    if values:
        raise mlflow_error(f"unsupported Content-Type parameters: {sorted(values)}", status=415)
    if mime.lower() not in CONTENT_TYPES:
        raise mlflow_error(
            f"unsupported Content-Type {mime!r}: send one of {list(CONTENT_TYPES)}", status=415
        )
    return mime.lower()


class ScoringDecoder:
    """Bodies of ``POST /invocations`` → the engine's columns, for one model's features
    (in the engine's order), within ``bounds``."""

    def __init__(self, features: Sequence[Feature], bounds: Bounds) -> None:
        self.features = tuple(features)
        self.names = frozenset(f.name for f in self.features)
        self.bounds = bounds
        self.max_rows = bounds.max_rows
        self.numeric = tuple(f for f in self.features if f.kind is Kind.NUMERIC)
        self.categorical = tuple(f for f in self.features if f.kind is Kind.CATEGORICAL)
        self._envelope = msgspec.json.Decoder(_envelope_type(self.features))

    def decode(self, body: bytes, content_type: bytes | None) -> Converted:
        """The columns of ``body``, and per feature the values converted on the way."""
        mime = media_type(content_type)
        if mime == JSON:
            self.bounds.check_invocations(body)
            typed = self._typed(body)
            if typed is not None:
                return typed
            return self._table(json_table(_parse(body), self.names))
        return self._table(frame_table(body, mime, self.features))

    def _typed(self, body: bytes) -> Converted | None:
        """Well-typed JSON in one pass; None when the body needs the general path."""
        try:
            envelope = self._envelope.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return None
        given = [getattr(envelope, key) for key in FORMATS if getattr(envelope, key) is not None]
        if len(given) != 1:
            return None
        if isinstance(given[0], list):
            rows = given[0]
            if not rows:  # no record names a column: the general path says which are missing
                return None
            table = {
                f.name: list(map(attrgetter(_slot(i)), rows)) for i, f in enumerate(self.features)
            }
            return self._table(table)
        split = given[0]
        table = split_table(
            {"columns": split.columns, "data": split.data, "index": split.index}, self.names
        )
        # The typed decoder reads every number as a float: a number in a categorical column
        # must keep its JSON text (3, not 3.0), which the general path does.
        found = (table.get(f.name, ()) for f in self.categorical)
        if not set(map(type, chain.from_iterable(found))) <= _STRING_TYPES:
            return None
        return self._table(table)

    def _table(self, table: Table) -> Converted:
        missing = [f.name for f in self.features if f.required and f.name not in table]
        if missing:
            raise mlflow_error(
                f"required column(s) missing from the input: {missing}", INVALID_PARAMETER_VALUE
            )
        rows = max(map(len, table.values()), default=0)
        if rows == 0:
            raise mlflow_error("the input has no rows")
        if rows > self.max_rows:
            raise mlflow_error(f"{rows} rows exceed the limit of {self.max_rows} per request")
        return convert_table(table, rows, self.numeric, self.categorical)


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # also reads the NaN and Infinity tokens MLflow's clients may send
            return json.loads(body)
        except (ValueError, RecursionError) as error:
            raise mlflow_error(f"the body is not valid JSON: {error}") from None


def _slot(index: int) -> str:
    return f"f{index}"


def _envelope_type(features: Sequence[Feature]) -> Any:
    """Records of exactly-typed values under any of the record formats, and nothing else:
    numbers for numeric features (no null for integer ones: MLflow refuses a missing integer),
    strings or null for categorical ones. Other keys are ignored."""
    fields: list[tuple[str, Any]] = []
    for index, feature in enumerate(features):
        if feature.kind is Kind.CATEGORICAL:
            kind: Any = str | None
        elif feature.mlflow_type in ("long", "integer"):
            kind = float
        else:
            kind = float | None
        fields.append((_slot(index), kind))
    row = msgspec.defstruct(
        "ScoringRecord",
        fields,
        rename={_slot(i): f.name for i, f in enumerate(features)},
        gc=False,
    )
    rows = list[row] | None  # type: ignore[valid-type]
    split = msgspec.defstruct(
        "ScoringSplit",
        [
            ("columns", list[str]),
            ("data", list[list[float | str | None]]),
            ("index", list[Any] | None, None),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.defstruct(
        "ScoringBody",
        [
            ("dataframe_split", split | None, None),
            ("dataframe_records", rows, None),
            ("instances", rows, None),
            ("inputs", rows, None),
        ],
    )
