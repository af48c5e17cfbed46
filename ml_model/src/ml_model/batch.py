"""Scoring one Arrow record batch: the API's value rules row by row, then the inference engine.

Rows that break a rule are *rejected* with a reason instead of failing the job. The rules are
the prediction API's (``prediction_api.inputs.validation``) read for typed tables:

- a numeric feature takes numbers or missing values. A value in a text column (CSV cells,
  string columns) that does not parse as a number (``"n/a"``, ``"0,23"``, ``"yes"``) is
  rejected, as the API refuses strings; so is an infinite number (``inf`` in a float column or
  as text), as the API refuses ``Infinity``. NaN in a float column is missing: tables, unlike
  JSON, have no other way to store one, and training reads it so;
- a categorical feature takes text or missing values; text is trimmed and blank is missing;
  categories never seen in training are scored (as the engine scores them) and counted, as
  ``ml_model.engine.report`` counts them, not rejected.

A column whose *type* cannot hold valid values (a date for a numeric feature, numbers or
booleans where text is expected) is no row's fault: ``check_schema`` refuses the whole input
naming the column, as ``ml-model predict`` refuses missing columns. Valid rows reach the engine
as the same numbers and strings the API hands it, so the predictions are the API's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml_model.engine import Columns, CompiledModel, InputReport
from ml_model.errors import UserError

PREDICTION = "prediction"
REASON = "reason"
MODEL_COLUMNS = ("model_name", "model_version", "model_run_id")


def output_columns(compiled: CompiledModel) -> list[str]:
    """The prediction columns every scorer adds (``ml-model predict`` and ``score``):
    ``prediction``, then ``probability_<class>`` per class. Here, not in ``ml_model.predict``,
    which imports MLflow: seconds of start-up for every Spark Python worker."""
    return [PREDICTION, *(f"probability_{label}" for label in compiled.classes or ())]


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    run_id: str


def _text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _numeric_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def check_schema(compiled: CompiledModel, schema: pa.Schema, keys: Sequence[str]) -> None:
    """Refuse input lacking the model's or the key columns, holding a feature column of a type
    that cannot hold its values, or already holding a column that scoring adds."""
    names = set(schema.names)
    missing = [c for c in compiled.schema.columns if c not in names]
    if missing:
        raise UserError(f"the input lacks the model's columns {missing} (it has {schema.names})")
    unknown_keys = [k for k in keys if k not in names]
    if unknown_keys:
        raise UserError(f"key columns {unknown_keys} are not in the input (it has {schema.names})")
    for name in compiled.schema.numeric:
        kind = _value_type(schema.field(name).type)
        if not (_numeric_type(kind) or _text(kind) or pa.types.is_null(kind)):
            raise UserError(f"column '{name}' is numeric in the model but holds {kind} values")
    for name in compiled.schema.categorical:
        kind = _value_type(schema.field(name).type)
        if not (_text(kind) or pa.types.is_null(kind)):
            raise UserError(
                f"column '{name}' is categorical in the model and takes text, not {kind} "
                "values; cast it to string"
            )
    clashing = [c for c in (*output_columns(compiled), *MODEL_COLUMNS, REASON) if c in keys]
    if clashing:
        raise UserError(f"the input already has columns named {clashing}; rename them to score")


def _distinct(column: pa.Array) -> tuple[list[str | None], np.ndarray]:
    """A text column as its distinct values and one index per row (-1 where missing)."""
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
    return encoded.dictionary.to_pylist(), codes


def _stripped(values: list[str | None]) -> np.ndarray:
    """Trimmed text, blank and missing as None, with a trailing None for index -1."""
    return np.array([*((v.strip() or None) if v is not None else None for v in values), None])


def _numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A numeric feature's column as float64 (NaN = missing), which rows break the rules, and
    the offending values as text (for reasons)."""
    if pa.types.is_null(column.type):
        nan = np.full(len(column), np.nan)
        return nan, np.zeros(len(column), dtype=bool), np.empty(0, dtype=object)
    if not _text(_value_type(column.type)):
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        values = values.astype(np.float64, copy=True)
        bad = np.isinf(values)
        return values, bad, values[bad].astype(str).astype(object)
    uniques, codes = _distinct(column)
    text = _stripped(uniques)
    parsed = np.array(pd.to_numeric(pd.Series(text, dtype=object), errors="coerce"), np.float64)
    bad_unique = (text != None) & ~np.isfinite(parsed)  # noqa: E711 - elementwise None test
    parsed[bad_unique] = np.nan
    bad = bad_unique[codes]
    return parsed[codes], bad, np.array([*uniques, None], dtype=object)[codes[bad]]


@dataclass(frozen=True)
class Scored:
    output: pa.RecordBatch  # key columns, prediction columns, model identity
    rejects: pa.RecordBatch  # the input's rejected rows as read, plus ``reason``
    report: InputReport  # unseen categories among the scored rows


class BatchScorer:
    """Scores record batches of an input whose schema passed ``check_schema``; ``keys`` are
    the input columns copied into the output (their types taken from ``schema``). Predicted
    values and probabilities are XGBoost's float32 numbers, stored as such."""

    def __init__(
        self,
        compiled: CompiledModel,
        identity: ModelIdentity,
        schema: pa.Schema,
        keys: Sequence[str],
    ) -> None:
        check_schema(compiled, schema, keys)
        self.compiled = compiled
        self.identity = identity
        self._lookups = {column.name: column.lookup for column in compiled.categorical}
        self.keys = tuple(keys)
        label = pa.float32() if compiled.classes is None else _label_type(compiled.classes)
        added = output_columns(compiled)
        self.output_schema = pa.schema(
            [schema.field(k) for k in self.keys]
            + [pa.field(added[0], label)]
            + [pa.field(name, pa.float32()) for name in added[1:]]
            + [pa.field(name, pa.string()) for name in MODEL_COLUMNS]
        )

    def score(self, batch: pa.RecordBatch) -> Scored:
        rows = batch.num_rows
        numeric = np.empty((rows, len(self.compiled.schema.numeric)))
        reasons = np.full(rows, None, dtype=object)
        for position, name in enumerate(self.compiled.schema.numeric):
            numeric[:, position], bad, values = _numbers(batch.column(name))
            for row, value in zip(np.flatnonzero(bad), values, strict=True):
                problem = f"column '{name}': {value!r} is not a finite number"
                reasons[row] = problem if reasons[row] is None else f"{reasons[row]}; {problem}"
        ok = reasons == None  # noqa: E711 - elementwise None test
        report, categorical = InputReport(), []
        for name in self.compiled.schema.categorical:
            column = batch.column(name)
            if pa.types.is_null(column.type):
                categorical.append(np.full(rows, None, dtype=object)[ok])
                continue
            uniques, codes = _distinct(column)
            values, kept = _stripped(uniques), codes[ok]
            categorical.append(values[kept])
            self._count_unseen(report, name, values, kept)
        columns = Columns(int(ok.sum()), numeric[ok], tuple(categorical))
        mask = pa.array(ok)
        rejected = batch.filter(pc.invert(mask))
        rejects = rejected.append_column(REASON, pa.array(reasons[~ok], type=pa.string()))
        return Scored(self._output(batch.filter(mask), columns), rejects, report)

    def _count_unseen(
        self, report: InputReport, name: str, values: np.ndarray, codes: np.ndarray
    ) -> None:
        """Add the scored rows of column ``name`` holding a category never seen in training
        (what ``input_report`` counts), from its distinct ``values``: once per value, not per
        row. ``codes`` index ``values``; -1 is its last entry, missing."""
        lookup = self._lookups.get(name)
        if lookup is None:  # a column the model ignores (entirely missing in training)
            return
        unseen = np.array([v is not None and v not in lookup for v in values], dtype=bool)
        hits = np.bincount(codes % len(values), minlength=len(values))[unseen]
        if hits.sum():
            report.unseen[name] = report.unseen.get(name, 0) + int(hits.sum())
            report.examples.setdefault(name, str(values[unseen][np.flatnonzero(hits)[0]]))

    def _output(self, valid: pa.RecordBatch, columns: Columns) -> pa.RecordBatch:
        arrays: list[pa.Array] = [
            valid.column(k).cast(self.output_schema.field(k).type) for k in self.keys
        ]
        label = self.output_schema.field(len(self.keys)).type
        if columns.rows:
            prediction = self.compiled.predict(columns)
            arrays.append(pa.array(prediction.values).cast(label))
            probabilities = () if prediction.probabilities is None else prediction.probabilities.T
            arrays.extend(pa.array(p, type=pa.float32()) for p in probabilities)
        else:
            arrays.extend(pa.array([], type=f.type) for f in self.output_schema[len(arrays) :])
            return pa.RecordBatch.from_arrays(arrays, schema=self.output_schema)
        identity = (self.identity.name, self.identity.version, self.identity.run_id)
        arrays.extend(pa.repeat(pa.scalar(v, pa.string()), columns.rows) for v in identity)
        return pa.RecordBatch.from_arrays(arrays, schema=self.output_schema)


def _label_type(classes: Sequence[object]) -> pa.DataType:
    return pa.array(list(classes)).type
