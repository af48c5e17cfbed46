"""Categories the model never saw in training, counted per feature for each request.

An unseen category sets no one-hot column: a legitimate outcome for one odd value, silent
damage for a whole column, so the service counts them (``prediction_api_input_values``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml_model.engine import Columns, CompiledModel


class UnseenCounter:
    """Counts, per categorical feature, the present values that are no known category once
    trimmed (as the engine trims them)."""

    def __init__(self, compiled: CompiledModel) -> None:
        self._columns = tuple(
            (column.name, column.position, frozenset(column.lookup))
            for column in compiled.categorical
        )

    def count(self, columns: Columns) -> dict[str, int]:
        """Feature name → unseen values in ``columns``, for the features that have any."""
        found: dict[str, int] = {}
        for name, position, known in self._columns:
            values = columns.categorical[position]
            # Clean known values and nulls take two C-level passes; only the rest (padded,
            # blank or unseen strings) are looked at one by one.
            if sum(map(known.__contains__, values)) + _missing(values) == len(values):
                continue
            unseen = sum(
                1
                for value in values
                if value.__class__ is str and (text := value.strip()) and text not in known
            )
            if unseen:
                found[name] = unseen
        return found


def _missing(values: Sequence[Any]) -> int:
    return values.count(None)
