"""``ml-model predict``'s scoring from a stored model folder: streamed chunk by chunk through the
engine, refusing input that lacks the model's columns, and counting what it could not use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from ml_model.config import CsvConfig, Task
from ml_model.engine import compile_pipeline, input_report
from ml_model.errors import UserError
from ml_model.pipeline import SKOPS_TRUSTED_TYPES
from ml_model.predict import predict_file
from tests.support.pipelines import Fitted


@pytest.fixture(scope="module")
def classifier(fit: Any) -> Fitted:
    fitted: Fitted = fit(Task.MULTICLASS)
    return fitted


@pytest.fixture(scope="module")
def model_dir(classifier: Fitted, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stored") / "model"
    mlflow.sklearn.save_model(
        classifier.pipeline,
        str(path),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    return path


def rows(fitted: Fitted, n: int = 60) -> pd.DataFrame:
    """Training rows as a file holds them: text columns of plain strings."""
    table = fitted.X.head(n).reset_index(drop=True)
    categorical = [c for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)]
    return table.astype(dict.fromkeys(categorical, object))


@pytest.mark.parametrize(("source", "target"), [("csv", "parquet"), ("parquet", "csv")])
def test_chunks_score_like_the_pipeline(
    classifier: Fitted, model_dir: Path, tmp_path: Path, source: str, target: str
) -> None:
    table = rows(classifier)
    table.loc[3, "cat_0"] = "  padded  "
    source_path, scored = tmp_path / f"in.{source}", tmp_path / f"out.{target}"
    table.to_csv(source_path, index=False) if source == "csv" else table.to_parquet(source_path)
    result = predict_file(str(model_dir), source_path, scored, chunk_rows=7)
    assert result.rows == len(table)
    out = pd.read_csv(scored) if target == "csv" else pd.read_parquet(scored)
    assert out["prediction"].tolist() == classifier.pipeline.predict(table).tolist()
    proba = out[[f"probability_{c}" for c in classifier.pipeline.classes_]].to_numpy()
    np.testing.assert_allclose(proba, classifier.pipeline.predict_proba(table), rtol=1e-6)
    assert out.columns[: table.shape[1]].tolist() == table.columns.tolist()


def test_input_without_the_models_columns_is_refused_and_nothing_written(
    classifier: Fitted, model_dir: Path, tmp_path: Path
) -> None:
    """A semicolon-separated file read as one column must not score every row alike."""
    source, scored = tmp_path / "in.csv", tmp_path / "out.csv"
    rows(classifier).to_csv(source, index=False, sep=";")
    comma = CsvConfig(sep=",")
    with pytest.raises(UserError, match=r"lacks the model's columns \['num_0', 'num_1'"):
        predict_file(str(model_dir), source, scored, csv=comma)
    assert not scored.exists()
    assert list(tmp_path.iterdir()) == [source]  # no temporary file left either

    result = predict_file(str(model_dir), source, scored, allow_missing_columns=True, csv=comma)
    assert result.rows == len(rows(classifier))
    assert any("lacks columns" in w for w in result.warnings)


def test_cells_the_engine_cannot_use_are_counted_per_column(
    classifier: Fitted, model_dir: Path, tmp_path: Path
) -> None:
    table = rows(classifier).astype({"num_1": object})
    table.loc[[2, 5, 9], "num_1"] = ["0,23", "12 kg", "1.5e"]  # decimal comma and other junk
    table.loc[[4, 6], "num_1"] = ["  ", "n/a"]  # blank and a missing marker: not bad numbers
    table.loc[[1, 7], "cat_2"] = ["Atlantis", " Atlantis "]
    table.loc[8, "cat_2"] = None
    source, scored = tmp_path / "in.csv", tmp_path / "out.csv"
    table.to_csv(source, index=False)
    report = predict_file(str(model_dir), source, scored, chunk_rows=4).report
    assert report.unparsed == {"num_1": 3}
    assert report.unseen == {"cat_2": 2}
    assert report.examples == {"num_1": "0,23", "cat_2": "Atlantis"}
    assert report.lines()[0].startswith("column 'num_1': 3 value(s) are not numbers")

    compiled = compile_pipeline(classifier.pipeline)
    clean = rows(classifier)
    assert input_report(compiled, clean, compiled.columns(clean)).lines() == []


def test_csv_dialect_is_sniffed_or_given(
    classifier: Fitted, model_dir: Path, tmp_path: Path
) -> None:
    """A semicolon file with decimal commas scores like the table it holds: the separator
    sniffed, the decimal mark given; the model's numeric columns come back with points."""
    table = rows(classifier)
    table.loc[2, "cat_0"] = "unknown"  # an extra missing-value marker
    source, scored = tmp_path / "in.csv", tmp_path / "out.csv"
    table.to_csv(source, index=False, sep=";", decimal=",")
    assert "," in source.read_text()  # the decimal commas are there to read
    result = predict_file(
        str(model_dir), source, scored, csv=CsvConfig(decimal=",", na_values=["unknown"])
    )
    out = pd.read_csv(scored)
    expected = table.assign(cat_0=table["cat_0"].replace("unknown", None))
    assert out["prediction"].tolist() == classifier.pipeline.predict(expected).tolist()
    assert result.report.unparsed == {}  # every decimal comma read
    assert result.report.unseen == {}  # "unknown" read as missing, not as a category
    np.testing.assert_allclose(out["num_0"], table["num_0"])

    table.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(UserError, match="CSV options only apply to CSV input"):
        predict_file(str(model_dir), tmp_path / "in.parquet", scored, csv=CsvConfig(sep=";"))
