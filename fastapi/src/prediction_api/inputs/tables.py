"""MLflow's request formats → raw columns (feature name → values), as its scoring server reads
them: the four JSON formats from a parsed body, CSV and Parquet with pandas. Columns the model
does not take are left out, as MLflow ignores them; short ``dataframe_split`` rows are padded
with missing values, as pandas pads them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from operator import itemgetter, methodcaller
from typing import Any

from prediction_api.errors import INVALID_PARAMETER_VALUE, ApiError, mlflow_error
from prediction_api.features import Feature, Kind
from prediction_api.inputs.conversions import Table

CSV = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def json_table(payload: Any, names: frozenset[str]) -> Table:
    """The raw columns named ``names`` of a parsed JSON body in any of MLflow's four formats;
    other columns are ignored, as MLflow ignores them."""
    if not isinstance(payload, dict):
        raise mlflow_error(f"expected a JSON object with one of the keys {list(FORMATS)}")
    given = [key for key in FORMATS if key in payload]
    if len(given) != 1:
        raise mlflow_error(f"give exactly one of {list(FORMATS)}; got {given or 'none'}")
    data = payload[given[0]]
    if given[0] == "dataframe_split":
        return split_table(data, names)
    if isinstance(data, dict) and given[0] == "inputs":
        return _columns_table(data, names)
    if not isinstance(data, list) or not all(type(r) is dict for r in data):
        raise mlflow_error(f"'{given[0]}' must be a list of records (JSON objects)")
    present = names.intersection(*data) if data else frozenset()
    if len(present) < len(names):  # a column sent in some records only: missing in the others
        present = names & set().union(*data)
    return {name: list(map(methodcaller("get", name), data)) for name in present}


def split_table(table: Any, names: frozenset[str]) -> Table:
    if not isinstance(table, dict) or not set(table) <= {"columns", "data", "index"}:
        raise mlflow_error(
            "'dataframe_split' must be an object with 'data' and optionally 'columns' and 'index'"
        )
    columns, data = table.get("columns"), table.get("data")
    if not isinstance(data, list) or not all(type(r) is list for r in data):
        raise mlflow_error("'dataframe_split.data' must be a list of rows (lists)")
    index = table.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise mlflow_error("'dataframe_split.index' must list one label per row")
    if columns is None:  # pandas numbers the columns: none has a feature's name
        return {}
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise mlflow_error("'dataframe_split.columns' must be a list of column names")
    if len(set(columns)) != len(columns):
        raise mlflow_error("'dataframe_split.columns' names a column twice")
    width = len(columns)
    widths = set(map(len, data))
    if widths and max(widths) > width:
        raise mlflow_error(f"a row of 'dataframe_split.data' has more than {width} values")
    wanted = {name: i for i, name in enumerate(columns) if name in names}
    if widths <= {width}:
        return {name: list(map(itemgetter(i), data)) for name, i in wanted.items()}
    # pandas fills short rows with missing values
    return {name: [r[i] if i < len(r) else None for r in data] for name, i in wanted.items()}


def _columns_table(data: dict[str, Any], names: frozenset[str]) -> Table:
    """``{"inputs": {"column": [values], ...}}``."""
    if not all(isinstance(v, list) for v in data.values()):
        raise mlflow_error("'inputs' given as an object must map each column to a list")
    if len(set(map(len, data.values()))) > 1:
        raise mlflow_error("the columns of 'inputs' differ in length")
    return {name: values for name, values in data.items() if name in names}


def frame_table(body: bytes, mime: str, features: Sequence[Feature]) -> Table:
    """The raw columns of a CSV or Parquet body, read with pandas as MLflow reads them (CSV with
    the signature's dtypes)."""
    import pandas as pd

    try:
        if mime == CSV:
            dtypes = {f.name: _pandas_type(f) for f in features}
            frame = pd.read_csv(io.StringIO(body.decode("utf-8")), dtype=dtypes)
        else:
            frame = pd.read_parquet(io.BytesIO(body))
            _check_parquet_types(frame, features)
    except ApiError:
        raise
    except Exception as error:  # pandas' and pyarrow's parse errors have no common base
        kind = "CSV" if mime == CSV else "Parquet"
        raise mlflow_error(f"cannot read the body as {kind}: {error}") from None
    return {str(c): frame[c].tolist() for c in frame.columns if isinstance(c, str)}


def _pandas_type(feature: Feature) -> str:
    if feature.kind is Kind.CATEGORICAL:
        return "object"
    return "int64" if feature.mlflow_type in ("long", "integer") else "float64"


def _check_parquet_types(frame: Any, features: Sequence[Feature]) -> None:
    """MLflow casts nothing in a Parquet table; its schema enforcement allows only safe casts
    (integers to long, small integers and floats to double, text to string)."""
    for feature in features:
        if feature.name not in frame:
            continue
        dtype = frame[feature.name].dtype
        kind = getattr(dtype, "kind", "O")
        if feature.kind is Kind.CATEGORICAL:
            ok = kind in "OU" or str(dtype) in ("str", "string")
        elif feature.mlflow_type in ("long", "integer"):
            ok = kind == "i" or (kind == "u" and dtype.itemsize < 8)
        else:
            ok = kind == "f" or (kind in "iu" and dtype.itemsize <= 6)
        if not ok:
            raise mlflow_error(
                f"column '{feature.name}' ({feature.mlflow_type}) has type {dtype}, which "
                "does not convert safely",
                INVALID_PARAMETER_VALUE,
            )
