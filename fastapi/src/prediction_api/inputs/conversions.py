"""Raw column values → the signature's types, converting what MLflow's serving converts.

``mlflow models serve`` casts each column to its signature type with pandas ``astype`` before
predicting, so a client may send:

- ``double``: numbers; null or NaN (missing); booleans (1.0 / 0.0); strings that Python's
  ``float`` reads (``" 200.5 "``, ``"nan"`` is missing). Infinities, other strings and nested
  values are refused (MLflow's model fails on them).
- ``long`` / ``integer``: integers; booleans; floats, truncated toward zero; strings that
  Python's ``int`` reads. A missing value is refused: MLflow cannot hold it in an integer
  column.
- ``string``: strings and null (missing); numbers and booleans become their text
  (``3`` → ``"3"``), which is a category like any other.

A column of values already of the feature's type is converted with one numpy call; only a
column holding something else is walked value by value. Converted values are counted per
column, so conversions are visible (metrics) rather than silent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_model.engine import Columns
from prediction_api.errors import mlflow_error
from prediction_api.features import Feature, Kind

_NONE = type(None)
_DOUBLE_NATIVE = frozenset({float, int, _NONE})
_STRING_NATIVE = frozenset({str, _NONE})
_INT64 = 2**63
Table = dict[str, list[Any]]  # feature name → its raw values; absent features left out


@dataclass(frozen=True)
class Converted:
    """A request's columns, and per feature how many values were converted to its type."""

    columns: Columns
    coerced: dict[str, int] = field(default_factory=dict)


def convert_table(
    table: Table, rows: int, numeric: Sequence[Feature], categorical: Sequence[Feature]
) -> Converted:
    """The engine's columns of ``rows`` rows from ``table`` (an optional feature it lacks is
    missing); one 400 naming each column that cannot be converted."""
    coerced: dict[str, int] = {}
    problems: list[str] = []

    def column(feature: Feature) -> Any:
        values = table.get(feature.name)
        if values is None:  # an optional feature left out: missing
            values = [None] * rows
        try:
            converted, count = convert_column(values, feature)
        except ValueError as error:
            problems.append(str(error))
            return None
        if count:
            coerced[feature.name] = count
        return converted

    matrix_columns = [column(f) for f in numeric]
    strings = tuple(column(f) for f in categorical)
    if problems:
        raise mlflow_error("; ".join(problems))
    matrix = np.column_stack(matrix_columns) if matrix_columns else np.empty((rows, 0))
    return Converted(Columns(rows, matrix, strings), coerced)


def convert_column(values: list[Any], feature: Feature) -> tuple[Any, int]:
    """``values`` as the engine takes them (a float64 array, or a tuple of str / None) and
    how many were converted; ValueError naming the column, row and value when one cannot be."""
    if feature.kind is Kind.CATEGORICAL:
        return _strings(values, feature.name)
    if feature.mlflow_type in ("long", "integer"):
        return _integers(values, feature.name)
    return _doubles(values, feature.name)


def _refuse(name: str, kind: str, row: int, value: Any, why: str) -> ValueError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    return ValueError(f"column '{name}' ({kind}), row {row}: {shown} {why}")


def _doubles(values: list[Any], name: str) -> tuple[np.ndarray, int]:
    if set(map(type, values)) <= _DOUBLE_NATIVE:
        try:
            array = np.array(values, dtype=np.float64)  # None → NaN
        except OverflowError:
            pass
        else:
            if not np.isinf(array).any():
                return array, 0
    array = np.empty(len(values))
    coerced = 0
    for row, value in enumerate(values):
        if value is None:
            array[row] = math.nan
            continue
        kind = type(value)
        if kind is str or kind is bool:
            coerced += 1
        elif kind is not int and kind is not float:
            raise _refuse(name, "double", row, value, "is not a number")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise _refuse(name, "double", row, value, "is not a number") from None
        if math.isinf(number):
            raise _refuse(name, "double", row, value, "is not finite")
        array[row] = number
    return array, coerced


def _integers(values: list[Any], name: str) -> tuple[np.ndarray, int]:
    if set(map(type, values)) <= {int}:
        try:
            return np.array(values, dtype=np.int64).astype(np.float64), 0
        except OverflowError:
            pass
    if set(map(type, values)) <= {float}:
        array = np.array(values, dtype=np.float64)
        if np.isfinite(array).all() and (np.abs(array) < _INT64).all():
            truncated = np.trunc(array)
            return truncated, int(np.count_nonzero(truncated != array))
    array = np.empty(len(values))
    coerced = 0
    for row, value in enumerate(values):
        kind = type(value)
        if value is None or (kind is float and math.isnan(value)):
            raise _refuse(
                name, "long", row, value, "is missing; an integer column cannot hold missing values"
            )
        if kind is not int and kind is not float and kind is not bool and kind is not str:
            raise _refuse(name, "long", row, value, "is not an integer")
        try:
            number = int(value)
        except (ValueError, OverflowError):
            raise _refuse(name, "long", row, value, "is not an integer") from None
        if not -_INT64 <= number < _INT64:
            raise _refuse(name, "long", row, value, "is out of the 64-bit integer range")
        coerced += kind is not int and (kind is not float or number != value)
        array[row] = number
    return array, coerced


def _strings(values: list[Any], name: str) -> tuple[tuple[Any, ...], int]:
    if set(map(type, values)) <= _STRING_NATIVE:
        return tuple(values), 0
    converted: list[str | None] = []
    coerced = 0
    for row, value in enumerate(values):
        kind = type(value)
        if kind is str or value is None:
            converted.append(value)
        elif kind is float and math.isnan(value):
            converted.append(None)
        elif kind is int or kind is float or kind is bool:
            converted.append(str(value))
            coerced += 1
        else:
            raise _refuse(name, "string", row, value, "is not a string")
    return tuple(converted), coerced
