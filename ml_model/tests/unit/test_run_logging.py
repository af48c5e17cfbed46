"""The dataset digest and schema computed from a few cells equal what MLflow computes from all."""

import numpy as np
import pandas as pd
import pytest
from mlflow.data.pandas_dataset import from_pandas

from ml_model.config import Task
from ml_model.run_logging import dataset_digest, dataset_schema
from ml_model.synthetic import make_dataset


def awkward_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array(["red", "green", "blue"], dtype=object)
    with_none = words[rng.integers(0, 3, rows)].copy()
    with_none[::5] = None
    mixed = words[rng.integers(0, 3, rows)].copy()
    mixed[::7] = 3  # an int among strings: not an all-string column
    floats = rng.normal(size=rows)
    floats[::4] = np.nan
    return pd.DataFrame(
        {
            "int": rng.integers(0, 100, rows),
            "float": floats,
            "nullable": pd.array(np.where(np.arange(rows) % 3, 1, None), dtype="Int64"),
            "bool": rng.random(rows) > 0.5,
            "when": pd.date_range("2024-01-01", periods=rows, freq="min"),
            "words": words[rng.integers(0, 3, rows)],
            "with_none": with_none,
            "mixed": mixed,
            "category": pd.Categorical(with_none),
            "category_full": pd.Categorical(words[rng.integers(0, 3, rows)]),
            "string": pd.array(with_none, dtype="string"),
        }
    )


@pytest.mark.parametrize(
    "frame",
    [
        awkward_frame(50),
        awkward_frame(12_000),  # beyond the rows the digest hashes
        make_dataset(3_000, Task.MULTICLASS, seed=1),
    ],
    ids=["small", "long", "synthetic"],
)
def test_digest_and_schema_equal_mlflows(frame: pd.DataFrame) -> None:
    reference = from_pandas(frame, source="memory")
    assert dataset_digest(frame) == reference.digest
    assert dataset_schema(frame) == reference.schema
