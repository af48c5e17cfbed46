"""Batch scoring of a CSV or Parquet file with a stored model."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ml_model import tracking
from ml_model.data import file_format, read_table
from ml_model.errors import UserError
from ml_model.model_io import load_pipeline

PREDICTION = "prediction"


def score(pipeline: object, frame: pd.DataFrame) -> pd.DataFrame:
    """The input rows with a ``prediction`` column, plus ``probability_<class>`` columns for
    classifiers."""
    scored = frame.copy()
    scored[PREDICTION] = pipeline.predict(frame)  # type: ignore[attr-defined]
    classes = getattr(pipeline, "classes_", None)
    if classes is not None:
        proba = np.asarray(pipeline.predict_proba(frame))  # type: ignore[attr-defined]
        for column, label in enumerate(classes):
            scored[f"probability_{label}"] = proba[:, column]
    return scored


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet (by extension) atomically: a failed write leaves no partial file."""
    fmt = file_format(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def predict_file(model_uri: str, input_path: Path, output_path: Path) -> tuple[int, list[str]]:
    """Score ``input_path`` into ``output_path``; returns (rows, warnings raised on the way)."""
    file_format(str(output_path))  # fail on a bad output name before any work
    frame = read_table(str(input_path))
    if frame.empty:
        raise UserError(f"{input_path} has no rows to score")
    if model_uri.startswith(("models:/", "runs:/")):
        tracking.connect()
    pipeline = load_pipeline(model_uri)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        scored = score(pipeline, frame)
    write_table(scored, output_path)
    return len(scored), [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
