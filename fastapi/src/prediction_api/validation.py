"""Request bodies → typed feature columns, with every problem named by row and field.

A ``Validator`` is built once per loaded model from its features. Each request goes through a
fast path that checks whole columns at once (the set of value types, ``np.isfinite``) and
converts them with numpy; only when that finds something wrong does the slow path walk the
offending columns value by value to name each bad field and row. Both paths accept exactly the
same inputs.

Value rules (the model signature's types, the trainer's cleaning rules):

- numeric features: JSON numbers or null; booleans, strings and non-finite numbers (``NaN``,
  ``Infinity``, which lenient JSON encoders emit) are refused;
- categorical features: JSON strings or null; other types are refused. Strings are trimmed and
  a blank string is missing, as in training; values never seen in training are accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from prediction_api.errors import MAX_PROBLEMS, InputError, problem
from prediction_api.features import Feature, Kind

_NUMBER_TYPES = frozenset({int, float})
_NULL_TYPES = frozenset({type(None)})
_NUMERIC_OK = _NUMBER_TYPES | _NULL_TYPES
_CATEGORICAL_OK = frozenset({str}) | _NULL_TYPES


@dataclass(frozen=True)
class Batch:
    """Validated input of ``rows`` rows: the numeric features as one float64 matrix (columns in
    ``Validator.numeric_names`` order, NaN = missing) and one tuple of str-or-None values per
    categorical feature (``Validator.categorical_names`` order; not yet trimmed)."""

    rows: int
    numeric: np.ndarray
    categorical: tuple[tuple[Any, ...], ...]


Row = tuple[Any, ...]


def _row_getter(keys: Sequence[Any]) -> Callable[[Any], Row]:
    """``record → tuple of its values at keys`` in one C call (itemgetter)."""
    if not keys:
        return lambda _: ()
    if len(keys) == 1:
        get_one = itemgetter(keys[0])
        return lambda record: (get_one(record),)
    return itemgetter(*keys)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Validator:
    """Input checks compiled from a model's features; ``max_rows`` bounds every batch."""

    def __init__(self, features: Sequence[Feature], max_rows: int) -> None:
        self.features = tuple(features)
        self.max_rows = max_rows
        self.names = frozenset(f.name for f in self.features)
        self.required = tuple(f.name for f in self.features if f.required)
        self._required_set = frozenset(self.required)
        self._all_required = len(self.required) == len(self.features)
        self.numeric_names = tuple(f.name for f in self.features if f.kind is Kind.NUMERIC)
        self.categorical_names = tuple(f.name for f in self.features if f.kind is Kind.CATEGORICAL)
        self._numeric_row = _row_getter(self.numeric_names)
        self._categorical_row = _row_getter(self.categorical_names)

    def _keys_ok(self, records: list[dict[str, Any]]) -> bool:
        """Every record has every required feature and no unknown key (C-level loops)."""
        if not all(map(self.names.issuperset, records)):
            return False
        if self._all_required:
            return set(map(len, records)) == {len(self.names)}
        return all(map(self._required_set.issubset, records))

    # --- request formats -------------------------------------------------------------------

    def predict_body(self, payload: Any) -> Batch:
        """``POST /predict``: one record (an object) or a list of records."""
        if isinstance(payload, dict):
            return self.records([payload], ("body",), single=True)
        if isinstance(payload, list):
            return self.records(payload, ("body",))
        raise InputError(
            [
                problem(
                    ("body",),
                    f"expected a JSON object (one record) or an array of records, "
                    f"got {json_type(payload)}",
                    "type_error",
                )
            ]
        )

    def invocations_body(self, payload: Any) -> Batch:
        """``POST /invocations``: ``{"dataframe_split": ...}`` or ``{"dataframe_records": ...}``
        as MLflow's scoring server takes them."""
        formats = ("dataframe_split", "dataframe_records")
        if not isinstance(payload, dict):
            raise InputError(
                [problem(("body",), f"expected a JSON object, got {json_type(payload)}")]
            )
        given = [key for key in formats if key in payload]
        extra = [key for key in payload if key not in formats]
        problems = [
            problem(("body", key), "unsupported input key", "extra_forbidden", field=key)
            for key in extra[:MAX_PROBLEMS]
        ]
        if len(given) != 1:
            problems.append(
                problem(("body",), "give exactly one of 'dataframe_split' or 'dataframe_records'")
            )
        if problems:
            raise InputError(problems)
        if given[0] == "dataframe_records":
            records = payload["dataframe_records"]
            if not isinstance(records, list):
                raise InputError(
                    [
                        problem(
                            ("body", "dataframe_records"),
                            f"expected an array of records, got {json_type(records)}",
                            "type_error",
                        )
                    ]
                )
            return self.records(records, ("body", "dataframe_records"))
        return self.split(payload["dataframe_split"], ("body", "dataframe_split"))

    # --- record lists and column tables -----------------------------------------------------

    def _check_size(self, rows: int, loc: tuple[Any, ...]) -> None:
        if rows == 0:
            raise InputError([problem(loc, "empty batch: send at least one record", "too_short")])
        if rows > self.max_rows:
            raise InputError(
                [
                    problem(
                        loc,
                        f"{rows} rows exceed the limit of {self.max_rows} per request",
                        "too_long",
                    )
                ]
            )

    def records(self, records: list[Any], loc: tuple[Any, ...], single: bool = False) -> Batch:
        """A list of records (objects keyed by feature name)."""
        self._check_size(len(records), loc)
        if all(type(r) is dict for r in records) and self._keys_ok(records):
            if self._all_required:
                numeric = list(map(self._numeric_row, records))
                categorical = list(map(self._categorical_row, records))
            else:
                numeric = [tuple(r.get(n) for n in self.numeric_names) for r in records]
                categorical = [tuple(r.get(n) for n in self.categorical_names) for r in records]
            return self.values(numeric, categorical, loc, single)
        return self._records_slow(records, loc, single)

    def _records_slow(self, records: list[Any], loc: tuple[Any, ...], single: bool) -> Batch:
        problems: list[dict[str, Any]] = []
        names = self.names
        numeric: list[Row] = []
        categorical: list[Row] = []
        for row, record in enumerate(records):
            where = loc if single else (*loc, row)
            if not isinstance(record, dict):
                problems.append(
                    problem(
                        where,
                        f"expected a record (JSON object), got {json_type(record)}",
                        "type_error",
                        row=row,
                    )
                )
                record = {}  # noqa: PLW2901 - reported; its values count as missing
            else:
                problems.extend(
                    problem((*where, name), "required feature is missing", "missing", row, name)
                    for name in self.required
                    if name not in record
                )
                problems.extend(
                    problem((*where, key), "unknown field", "extra_forbidden", row, key)
                    for key in record
                    if key not in names
                )
            numeric.append(tuple(record.get(n) for n in self.numeric_names))
            categorical.append(tuple(record.get(n) for n in self.categorical_names))
        try:
            batch = self.values(numeric, categorical, loc, single)
        except InputError as error:
            problems.extend(error.problems)
        if problems:
            raise InputError(sorted(problems, key=_row_order))
        return batch

    def split(self, table: Any, loc: tuple[Any, ...]) -> Batch:
        """MLflow's ``dataframe_split``: ``{"columns": [...], "data": [[...], ...]}``."""
        if not isinstance(table, dict):
            raise InputError(
                [problem(loc, f"expected an object, got {json_type(table)}", "type_error")]
            )
        problems = [
            problem((*loc, key), "unsupported key", "extra_forbidden", field=str(key))
            for key in table
            if key not in ("columns", "data", "index")
        ]
        columns, data = table.get("columns"), table.get("data")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            problems.append(problem((*loc, "columns"), "expected an array of column names"))
        if not isinstance(data, list):
            problems.append(problem((*loc, "data"), "expected an array of rows (arrays)"))
        if problems:
            raise InputError(problems)
        assert isinstance(columns, list) and isinstance(data, list)
        self._check_size(len(data), (*loc, "data"))
        position: dict[str, int] = {}
        for index, name in enumerate(columns):
            if name in position:
                problems.append(problem((*loc, "columns", index), "duplicate column", field=name))
            elif name not in self.names:
                problems.append(
                    problem(
                        (*loc, "columns", index), "unknown column", "extra_forbidden", field=name
                    )
                )
            position.setdefault(name, index)
        problems.extend(
            problem((*loc, "columns"), "required feature is missing", "missing", None, name)
            for name in self.required
            if name not in position
        )
        width = len(columns)
        bad_rows = [i for i, r in enumerate(data) if type(r) is not list or len(r) != width]
        problems.extend(
            problem(
                (*loc, "data", i),
                f"expected an array of {width} values (one per column)",
                "type_error",
                row=i,
            )
            for i in bad_rows[:MAX_PROBLEMS]
        )
        if problems:
            raise InputError(problems)
        numeric_at = [position.get(n) for n in self.numeric_names]
        categorical_at = [position.get(n) for n in self.categorical_names]
        if None in numeric_at or None in categorical_at:  # optional features left out
            numeric = [tuple(_at(r, i) for i in numeric_at) for r in data]
            categorical = [tuple(_at(r, i) for i in categorical_at) for r in data]
        else:
            numeric = list(map(_row_getter(numeric_at), data))
            categorical = list(map(_row_getter(categorical_at), data))
        return self.values(numeric, categorical, (*loc, "data"), False)

    # --- values ---------------------------------------------------------------------------

    def values(
        self, numeric: list[Row], categorical: list[Row], loc: tuple[Any, ...], single: bool
    ) -> Batch:
        """Check and convert the rows' values (one tuple per row and kind); raise InputError
        naming each bad value."""
        problems: list[dict[str, Any]] = []
        matrix = _numeric_fast(numeric, len(self.numeric_names))
        if matrix is None:
            matrix = np.column_stack(
                [
                    _numeric_slow([r[j] for r in numeric], name, loc, single, problems)
                    for j, name in enumerate(self.numeric_names)
                ]
            )
        if not set(map(type, chain.from_iterable(categorical))) <= _CATEGORICAL_OK:
            for j, name in enumerate(self.categorical_names):
                _categorical_problems([r[j] for r in categorical], name, loc, single, problems)
        if problems:
            raise InputError(sorted(problems, key=_row_order))
        columns = tuple(zip(*categorical, strict=True)) if self.categorical_names else ()
        return Batch(len(numeric), matrix, columns)


def _at(row: list[Any], index: int | None) -> Any:
    return None if index is None else row[index]


def _row_order(item: dict[str, Any]) -> int:
    return -1 if item["row"] is None else int(item["row"])


def _numeric_fast(rows: list[Row], width: int) -> np.ndarray | None:
    """The rows as a float64 matrix when every value is a finite number or null, else None
    (the caller then looks for the culprits value by value)."""
    if width == 0:
        return np.empty((len(rows), 0))
    types = set(map(type, chain.from_iterable(rows)))
    try:
        if types <= _NUMBER_TYPES:
            matrix = np.array(rows, dtype=np.float64)
            return matrix if np.isfinite(matrix).all() else None
        if types <= _NUMERIC_OK:
            cells = np.array(rows, dtype=object)
            null = cells == None  # noqa: E711 - elementwise comparison
            cells[null] = math.nan
            matrix = cells.astype(np.float64)
            return matrix if (np.isfinite(matrix) | null).all() else None
    except (OverflowError, ValueError, TypeError):  # e.g. an integer beyond float range
        return None
    return None


def _where(loc: tuple[Any, ...], single: bool, row: int, name: str) -> tuple[Any, ...]:
    return (*loc, name) if single else (*loc, row, name)


def _numeric_slow(
    column: list[Any], name: str, loc: tuple[Any, ...], single: bool, problems: list[Any]
) -> np.ndarray:
    values = np.full(len(column), np.nan)
    for row, value in enumerate(column):
        if value is None:
            continue
        if type(value) is not int and type(value) is not float:
            problems.append(
                problem(
                    _where(loc, single, row, name),
                    f"expected a number or null, got {json_type(value)}",
                    "type_error",
                    row,
                    name,
                )
            )
            continue
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            problems.append(
                problem(
                    _where(loc, single, row, name),
                    "expected a finite number; send null for a missing value",
                    "finite_number",
                    row,
                    name,
                )
            )
            continue
        values[row] = number
    return values


def _categorical_problems(
    column: list[Any], name: str, loc: tuple[Any, ...], single: bool, problems: list[Any]
) -> None:
    problems.extend(
        problem(
            _where(loc, single, row, name),
            f"expected a string or null, got {json_type(value)}",
            "type_error",
            row,
            name,
        )
        for row, value in enumerate(column)
        if type(value) not in _CATEGORICAL_OK
    )
