"""Request bodies → typed feature columns, with every problem named by row and field.

A ``Validator`` is built once per loaded model from its features. Each request goes through a
fast path that checks whole columns at once (the set of value types, ``np.isfinite``) and
converts them with numpy; only when that finds something wrong does the slow path walk the
offending columns value by value to name each bad field and row. Both paths accept exactly the
same inputs.

``POST /predict`` bodies are first decoded by a typed JSON decoder built from the features
(``decode_predict``): records become slotted rows with no dict per record, and the value rules
below are enforced while decoding, so its rows need no further checks. Whatever it refuses
(bad JSON, a wrong type, a non-finite or out-of-range number, a missing or unknown field) is
parsed again and handed to the record path, which names every problem.

Value rules (the model signature's types, the trainer's cleaning rules):

- numeric features: JSON numbers or null; booleans, strings and non-finite numbers (``NaN``,
  ``Infinity``, which lenient JSON encoders emit) are refused;
- categorical features: JSON strings or null; other types are refused. Strings are trimmed and
  a blank string is missing, as in training; values never seen in training are accepted.

Work is bounded for any body: a record, object or column list with more keys than
``Validator.max_keys`` (twice the features, plus WIDTH_MARGIN) is refused as a whole before its
keys are looked at, and problems beyond ``errors.MAX_PROBLEMS`` are counted, not described.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import msgspec
import numpy as np

from ml_model.engine import Columns
from prediction_api.errors import InputError, Problems, problem
from prediction_api.features import Feature, Kind

_NUMBER_TYPES = frozenset({int, float})
_NULL_TYPES = frozenset({type(None)})
_NUMERIC_OK = _NUMBER_TYPES | _NULL_TYPES
_CATEGORICAL_OK = frozenset({str}) | _NULL_TYPES
# No client sends this many stray keys by mistake; naming each of them would cost work and
# memory in proportion to a hostile body.
WIDTH_MARGIN = 100


Column = list[Any]
Getter = Callable[[Any], Any]


def _record_getter(feature: Feature) -> Getter:
    """A record's value of ``feature`` in one C call: its key (the record path checks that
    required features are present) or None when an optional one is left out."""
    return itemgetter(feature.name) if feature.required else methodcaller("get", feature.name)


def _columns(rows: list[Any], getters: Sequence[Getter]) -> list[Column]:
    """One list of values per getter, taken from every row (C-level loops)."""
    return [list(map(get, rows)) for get in getters]


def _row_decoder(features: Sequence[Feature]) -> msgspec.json.Decoder[Any]:
    """A JSON decoder for one record or a list of records of ``features``: numbers (integers
    taken as floats) or null for numeric features, strings or null for categorical ones,
    required features present, no other field. Rows hold only numbers, strings and None, so
    the garbage collector need not track them."""
    fields: list[tuple[Any, ...]] = []
    for index, feature in enumerate(features):
        kind = float | None if feature.kind is Kind.NUMERIC else str | None
        fields.append((_slot(index), kind) if feature.required else (_slot(index), kind, None))
    row = msgspec.defstruct(
        "Record",
        fields,
        rename={_slot(i): feature.name for i, feature in enumerate(features)},
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(list[row] | row)  # type: ignore[valid-type]


def _slot(index: int) -> str:
    """The decoded row's attribute for feature ``index`` (feature names need not be
    identifiers)."""
    return f"f{index}"


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
    """Input checks compiled from a model's features; ``max_rows`` bounds every batch and
    ``max_keys`` every record, object and column list."""

    def __init__(self, features: Sequence[Feature], max_rows: int) -> None:
        self.features = tuple(features)
        self.max_rows = max_rows
        self.max_keys = 2 * len(self.features) + WIDTH_MARGIN
        self.names = frozenset(f.name for f in self.features)
        self.required = tuple(f.name for f in self.features if f.required)
        self._required_set = frozenset(self.required)
        self._all_required = len(self.required) == len(self.features)
        numeric = [f for f in self.features if f.kind is Kind.NUMERIC]
        categorical = [f for f in self.features if f.kind is Kind.CATEGORICAL]
        self.numeric_names = tuple(f.name for f in numeric)
        self.categorical_names = tuple(f.name for f in categorical)
        self._record_getters = (
            tuple(map(_record_getter, numeric)),
            tuple(map(_record_getter, categorical)),
        )
        slot = {f.name: attrgetter(_slot(i)) for i, f in enumerate(self.features)}
        self._decoded_getters = (
            tuple(slot[f.name] for f in numeric),
            tuple(slot[f.name] for f in categorical),
        )
        self._decoder = _row_decoder(self.features)

    def _keys_ok(self, records: list[dict[str, Any]]) -> bool:
        """Every record has every required feature and no unknown key (C-level loops)."""
        if not all(map(self.names.issuperset, records)):
            return False
        if self._all_required:
            return set(map(len, records)) == {len(self.names)}
        return all(map(self._required_set.issubset, records))

    # --- request formats -------------------------------------------------------------------

    def decode_predict(self, body: bytes) -> Columns | None:
        """``POST /predict`` straight from its body with the typed decoder; None when the
        decoder refuses it (the caller then parses it and uses ``predict_body``). What the
        decoder accepts needs no value checks: it holds only finite numbers (it refuses NaN
        and Infinity tokens and out-of-range numbers), strings and nulls, each where its
        feature's type allows."""
        try:
            decoded = self._decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError):  # msgspec names an unknown key in
            return None  # its error, and raises UnicodeDecodeError when that key is not UTF-8
        rows = decoded if isinstance(decoded, list) else [decoded]
        self._check_size(len(rows), ("body",))
        numeric, categorical = self._decoded_getters
        return Columns(
            len(rows),
            _float_matrix(_columns(rows, numeric), len(rows)),
            tuple(map(tuple, _columns(rows, categorical))),
        )

    def predict_body(self, payload: Any) -> Columns:
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

    def invocations_body(self, payload: Any) -> Columns:
        """``POST /invocations``: ``{"dataframe_split": ...}`` or ``{"dataframe_records": ...}``
        as MLflow's scoring server takes them."""
        formats = ("dataframe_split", "dataframe_records")
        if not isinstance(payload, dict):
            raise InputError(
                [problem(("body",), f"expected a JSON object, got {json_type(payload)}")]
            )
        self._check_width(len(payload), ("body",), "keys")
        given = [key for key in formats if key in payload]
        problems = Problems()
        extra = [key for key in payload if key not in formats]
        problems.add(
            extra,
            partial(_key_problem, ("body",), None, "unsupported input key", "extra_forbidden"),
        )
        if len(given) != 1:
            problems.append(
                problem(("body",), "give exactly one of 'dataframe_split' or 'dataframe_records'")
            )
        _raise(problems)
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

    def _check_width(
        self, width: int, loc: tuple[Any, ...], what: str, row: int | None = None
    ) -> None:
        """Refuse, unread, a record, object or column list of ``width`` keys when that is far
        more than the model has features."""
        if width > self.max_keys:
            raise InputError(
                [
                    problem(
                        loc,
                        f"{width} {what}; the model has {len(self.features)} features, and "
                        f"more than {self.max_keys} {what} are refused without reading them",
                        "too_wide",
                        row,
                    )
                ]
            )

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

    def records(self, records: list[Any], loc: tuple[Any, ...], single: bool = False) -> Columns:
        """A list of records (objects keyed by feature name)."""
        self._check_size(len(records), loc)
        widths = [len(r) if type(r) is dict else -1 for r in records]  # -1: not an object
        widest = max(widths)
        if widest > self.max_keys:
            row = widths.index(widest)
            self._check_width(widest, loc if single else (*loc, row), "fields", row)
        if min(widths) >= 0 and self._keys_ok(records):
            numeric, categorical = self._record_getters
            return self.values(
                len(records),
                _columns(records, numeric),
                _columns(records, categorical),
                loc,
                single,
                Problems(),
            )
        return self._records_slow(records, loc, single)

    def _records_slow(self, records: list[Any], loc: tuple[Any, ...], single: bool) -> Columns:
        problems = Problems()
        names = self.names
        readable: list[dict[str, Any]] = []  # a record that is not an object has no values
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
                readable.append({})
            else:
                readable.append(record)
                missing = [name for name in self.required if name not in record]
                problems.add(
                    missing,
                    partial(_key_problem, where, row, "required feature is missing", "missing"),
                )
                unknown = [key for key in record if key not in names]
                problems.add(
                    unknown, partial(_key_problem, where, row, "unknown field", "extra_forbidden")
                )
        numeric = [[r.get(name) for r in readable] for name in self.numeric_names]
        categorical = [[r.get(name) for r in readable] for name in self.categorical_names]
        return self.values(len(records), numeric, categorical, loc, single, problems)

    def split(self, table: Any, loc: tuple[Any, ...]) -> Columns:
        """MLflow's ``dataframe_split``: ``{"columns": [...], "data": [[...], ...]}``."""
        if not isinstance(table, dict):
            raise InputError(
                [problem(loc, f"expected an object, got {json_type(table)}", "type_error")]
            )
        self._check_width(len(table), loc, "keys")
        problems = Problems()
        extra = [key for key in table if key not in ("columns", "data", "index")]
        problems.add(extra, partial(_key_problem, loc, None, "unsupported key", "extra_forbidden"))
        columns, data = table.get("columns"), table.get("data")
        if isinstance(columns, list):
            self._check_width(len(columns), (*loc, "columns"), "columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            problems.append(problem((*loc, "columns"), "expected an array of column names"))
        if not isinstance(data, list):
            problems.append(problem((*loc, "data"), "expected an array of rows (arrays)"))
        _raise(problems)
        assert isinstance(columns, list) and isinstance(data, list)
        self._check_size(len(data), (*loc, "data"))
        position: dict[str, int] = {}
        bad_columns: list[tuple[int, str, str]] = []  # index, message, type
        for index, name in enumerate(columns):
            if name in position:
                bad_columns.append((index, "duplicate column", "value_error"))
            elif name not in self.names:
                bad_columns.append((index, "unknown column", "extra_forbidden"))
            position.setdefault(name, index)
        problems.add(bad_columns, partial(_column_problem, (*loc, "columns"), columns))
        missing = [name for name in self.required if name not in position]
        problems.add(
            missing,
            lambda name: problem(
                (*loc, "columns"), "required feature is missing", "missing", field=name
            ),
        )
        width = len(columns)
        bad_rows = [i for i, r in enumerate(data) if type(r) is not list or len(r) != width]
        problems.add(bad_rows, partial(_row_problem, (*loc, "data"), width))
        _raise(problems)

        def column(name: str) -> Column:  # an optional feature left out is missing
            index = position.get(name)
            return [None] * len(data) if index is None else list(map(itemgetter(index), data))

        numeric = list(map(column, self.numeric_names))
        categorical = list(map(column, self.categorical_names))
        return self.values(len(data), numeric, categorical, (*loc, "data"), False, problems)

    # --- values ---------------------------------------------------------------------------

    def values(
        self,
        rows: int,
        numeric: list[Column],
        categorical: list[Column],
        loc: tuple[Any, ...],
        single: bool,
        problems: Problems,
    ) -> Columns:
        """Check and convert the values of ``rows`` rows, given as one column per feature
        (``numeric_names`` and ``categorical_names`` order); raise InputError naming each bad
        value, and ``problems`` found before."""
        matrix = _numeric_fast(numeric, rows)
        if matrix is None:
            matrix = np.column_stack(
                [
                    _numeric_slow(column, name, loc, single, problems)
                    for column, name in zip(numeric, self.numeric_names, strict=True)
                ]
            )
        if not set(map(type, chain.from_iterable(categorical))) <= _CATEGORICAL_OK:
            for column, name in zip(categorical, self.categorical_names, strict=True):
                _categorical_problems(column, name, loc, single, problems)
        _raise(problems)
        return Columns(rows, matrix, tuple(map(tuple, categorical)))


def _raise(problems: Problems) -> None:
    """Raise InputError for ``problems``, if any, in row order."""
    if problems:
        raise InputError(sorted(problems.items, key=_row_order), omitted=problems.omitted)


def _row_order(item: dict[str, Any]) -> int:
    return -1 if item["row"] is None else int(item["row"])


def _key_problem(
    where: tuple[Any, ...], row: int | None, msg: str, kind: str, key: str
) -> dict[str, Any]:
    return problem((*where, key), msg, kind, row, key)


def _column_problem(
    where: tuple[Any, ...], columns: list[str], found: tuple[int, str, str]
) -> dict[str, Any]:
    index, msg, kind = found
    return problem((*where, index), msg, kind, field=columns[index])


def _row_problem(where: tuple[Any, ...], width: int, row: int) -> dict[str, Any]:
    return problem(
        (*where, row), f"expected an array of {width} values (one per column)", "type_error", row
    )


def _float_matrix(columns: list[Column], rows: int) -> np.ndarray:
    """Columns of numbers and nulls as a float64 matrix, one row per row, NaN for null."""
    if not columns:
        return np.empty((rows, 0))
    return np.array(columns, dtype=np.float64).T  # numpy reads None as NaN


def _numeric_fast(columns: list[Column], rows: int) -> np.ndarray | None:
    """The columns as a float64 matrix (one row per row, NaN for null) when every value is a
    finite number or null, else None (the caller then looks for the culprits value by
    value)."""
    if not set(map(type, chain.from_iterable(columns))) <= _NUMERIC_OK:
        return None
    try:
        matrix = _float_matrix(columns, rows)
    except (OverflowError, ValueError):  # e.g. an integer beyond float range
        return None
    # Each null is one NaN: any other non-finite value (a NaN or Infinity token) is refused.
    nulls = sum(column.count(None) for column in columns)
    return matrix if np.count_nonzero(~np.isfinite(matrix)) == nulls else None


def _where(loc: tuple[Any, ...], single: bool, row: int, name: str) -> tuple[Any, ...]:
    return (*loc, name) if single else (*loc, row, name)


def _numeric_slow(
    column: list[Any], name: str, loc: tuple[Any, ...], single: bool, problems: Problems
) -> np.ndarray:
    values = np.full(len(column), np.nan)
    bad: list[tuple[int, Any]] = []  # row, value: described only while there is room
    for row, value in enumerate(column):
        if value is None:
            continue
        if type(value) is not int and type(value) is not float:
            bad.append((row, value))
            continue
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            bad.append((row, value))
            continue
        values[row] = number
    problems.add(bad, partial(_numeric_problem, loc, single, name))
    return values


def _numeric_problem(
    loc: tuple[Any, ...], single: bool, name: str, found: tuple[int, Any]
) -> dict[str, Any]:
    row, value = found
    where = _where(loc, single, row, name)
    if type(value) is int or type(value) is float:
        message = "expected a finite number; send null for a missing value"
        return problem(where, message, "finite_number", row, name)
    return problem(
        where, f"expected a number or null, got {json_type(value)}", "type_error", row, name
    )


def _categorical_problems(
    column: list[Any], name: str, loc: tuple[Any, ...], single: bool, problems: Problems
) -> None:
    bad = [(row, value) for row, value in enumerate(column) if type(value) not in _CATEGORICAL_OK]
    problems.add(bad, partial(_categorical_problem, loc, single, name))


def _categorical_problem(
    loc: tuple[Any, ...], single: bool, name: str, found: tuple[int, Any]
) -> dict[str, Any]:
    row, value = found
    message = f"expected a string or null, got {json_type(value)}"
    return problem(_where(loc, single, row, name), message, "type_error", row, name)
