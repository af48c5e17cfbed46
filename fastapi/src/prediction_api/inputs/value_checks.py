"""The value rules of ``POST /predict``, column by column: a fast path checks whole columns at
once (the set of value types, ``np.isfinite``) and converts them with numpy; only when that
finds something wrong does the slow path walk the offending columns value by value to name
each bad field and row. Both paths accept exactly the same inputs (see ``validation``)."""

from __future__ import annotations

import math
from functools import partial
from itertools import chain
from typing import Any

import numpy as np

from ml_model.engine import Columns
from prediction_api.errors import InputError, Problems, problem

_NUMBER_TYPES = frozenset({int, float})
_NULL_TYPES = frozenset({type(None)})
_NUMERIC_OK = _NUMBER_TYPES | _NULL_TYPES
_CATEGORICAL_OK = frozenset({str}) | _NULL_TYPES

Column = list[Any]


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


def check_values(
    rows: int,
    numeric: list[Column],
    categorical: list[Column],
    names: tuple[tuple[str, ...], tuple[str, ...]],
    loc: tuple[Any, ...],
    single: bool,
    problems: Problems,
) -> Columns:
    """Check and convert the values of ``rows`` rows, given as one column per feature
    (``names``: the numeric and the categorical features, in that order); raise InputError
    naming each bad value, and ``problems`` found before."""
    numeric_names, categorical_names = names
    matrix = _numeric_fast(numeric, rows)
    if matrix is None:
        matrix = np.column_stack(
            [
                _numeric_slow(column, name, loc, single, problems)
                for column, name in zip(numeric, numeric_names, strict=True)
            ]
        )
    if not set(map(type, chain.from_iterable(categorical))) <= _CATEGORICAL_OK:
        for column, name in zip(categorical, categorical_names, strict=True):
            _categorical_problems(column, name, loc, single, problems)
    raise_problems(problems)
    return Columns(rows, matrix, tuple(map(tuple, categorical)))


def raise_problems(problems: Problems) -> None:
    """Raise InputError for ``problems``, if any, in row order."""
    if problems:
        raise InputError(sorted(problems.items, key=_row_order), omitted=problems.omitted)


def _row_order(item: dict[str, Any]) -> int:
    return -1 if item["row"] is None else int(item["row"])


def float_matrix(columns: list[Column], rows: int) -> np.ndarray:
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
        matrix = float_matrix(columns, rows)
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
