"""Batch scoring's pieces without servers: row rules and predictions of ``BatchScorer``, input
listing and units, and a unit's parts written whole and idempotently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_model import inputs, predict
from ml_model.batch import BatchScorer, ModelIdentity, output_columns
from ml_model.config import Task
from ml_model.engine import compile_pipeline, input_report
from ml_model.errors import UserError
from ml_model.parts import REJECTS, score_unit
from tests.support.pipelines import Fit, Fitted

IDENTITY = ModelIdentity("model", "3", "run")


def scorer_for(fitted: Fitted, schema: pa.Schema, keys: tuple[str, ...] = ("id",)) -> BatchScorer:
    return BatchScorer(compile_pipeline(fitted.pipeline), IDENTITY, schema, keys)


def rows(fitted: Fitted, count: int = 60) -> pd.DataFrame:
    frame = fitted.X.head(count).reset_index(drop=True)
    return frame.assign(id=np.arange(count, dtype=np.int64))


@pytest.mark.parametrize("task", [Task.REGRESSION, Task.MULTICLASS])
def test_valid_rows_predict_like_the_engine_on_the_frame(fit: Fit, task: Task) -> None:
    fitted = fit(task, trees=10)
    frame = rows(fitted)
    table = pa.Table.from_pandas(frame, preserve_index=False)  # categories: dictionary columns
    scored = scorer_for(fitted, table.schema).score(table.to_batches()[0])
    expected = compile_pipeline(fitted.pipeline).predict_frame(frame)
    out = scored.output.to_pandas()
    assert scored.rejects.num_rows == 0
    assert out.columns.tolist() == ["id", *output_columns(compile_pipeline(fitted.pipeline)),
                                    "model_name", "model_version", "model_run_id"]  # fmt: skip
    assert out["id"].tolist() == frame["id"].tolist()
    assert set(out["model_version"]) == {"3"}
    if expected.probabilities is None:
        np.testing.assert_array_equal(out["prediction"], expected.values)
    else:
        assert out["prediction"].tolist() == list(expected.values)
        np.testing.assert_array_equal(out.filter(like="probability_"), expected.probabilities)


def test_rows_breaking_the_api_rules_are_rejected_with_reasons(fit: Fit) -> None:
    fitted = fit(Task.REGRESSION, trees=10)
    frame = rows(fitted, 8).astype({"num_1": object, "cat_0": object})
    frame["num_1"] = frame["num_1"].map(lambda v: None if pd.isna(v) else f" {v} ")  # text
    frame.loc[1, "num_0"] = np.inf  # an infinite float
    frame.loc[2, "num_1"] = "n/a"
    frame.loc[3, "num_1"] = "inf"
    frame.loc[4, "num_1"] = "  "  # blank text: missing, not rejected
    frame.loc[5, "num_0"] = np.nan  # NaN in a float column: missing
    frame.loc[6, "cat_0"] = " never seen "  # scored, counted
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = scorer_for(fitted, table.schema).score(table.to_batches()[0])
    rejected = scored.rejects.to_pandas()
    assert rejected["id"].tolist() == [1, 2, 3]
    assert rejected["reason"].tolist() == [
        "column 'num_0': 'inf' is not a finite number",
        "column 'num_1': 'n/a' is not a finite number",
        "column 'num_1': 'inf' is not a finite number",
    ]
    assert rejected.columns.tolist() == [*frame.columns, "reason"]  # the rows as read
    assert scored.output.column("id").to_pylist() == [0, 4, 5, 6, 7]
    assert scored.report.unseen == {"cat_0": 1}
    kept = frame.drop(index=[1, 2, 3])
    expected = compile_pipeline(fitted.pipeline).predict_frame(kept)
    np.testing.assert_array_equal(scored.output.column("prediction").to_numpy(), expected.values)


@pytest.mark.parametrize(
    ("change", "keys", "message"),
    [
        (lambda f: f.drop(columns=["num_2"]), ("id",), "lacks the model's columns ['num_2']"),
        (lambda f: f, ("key",), "key columns ['key'] are not in the input"),
        (lambda f: f.assign(cat_1=7), ("id",), "column 'cat_1' is categorical in the model"),
        (lambda f: f.assign(num_0=pd.Timestamp(0)), ("id",), "column 'num_0' is numeric"),
        (lambda f: f.assign(prediction=1.0), ("prediction",), "already has columns named"),
    ],
)
def test_input_that_cannot_be_scored_is_refused_whole(
    fit: Fit, change: object, keys: tuple[str, ...], message: str
) -> None:
    fitted = fit(Task.REGRESSION, trees=10)
    assert callable(change)
    table = pa.Table.from_pandas(change(rows(fitted, 3)), preserve_index=False)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        scorer_for(fitted, table.schema, keys)


def test_output_columns_are_named_as_ml_model_predict_names_them(fit: Fit) -> None:
    compiled = compile_pipeline(fit(Task.MULTICLASS, trees=10).pipeline)
    assert output_columns(compiled) == predict.output_columns(compiled)


def test_inputs_skip_hidden_and_foreign_files_and_split_parquet_by_row_groups(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame({"x": np.arange(100.0)})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "a.parquet", row_group_size=10)
    frame.to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "_SUCCESS").touch()
    (tmp_path / ".a.parquet.crc").touch()
    (tmp_path / "notes.txt").touch()
    (tmp_path / "_rejects").mkdir()
    frame.to_csv(tmp_path / "_rejects" / "c.csv")
    files = inputs.list_inputs(str(tmp_path))
    assert [Path(f.path).name for f in files] == ["a.parquet", "b.csv"]
    units = inputs.units(files, rows=25)
    assert [(u.first, u.stop) for u in units] == [(0, 3), (3, 6), (6, 9), (9, 10), (0, 0)]
    assert sum(b.num_rows for u in units for b in inputs.batches(u)) == 200
    assert inputs.list_inputs(str(tmp_path / "*.csv"))[0].path.endswith("b.csv")
    before = inputs.digest(files)
    frame.head(5).to_csv(tmp_path / "b.csv", index=False)
    assert inputs.digest(inputs.list_inputs(str(tmp_path))) != before
    with pytest.raises(UserError, match="no CSV or Parquet files found"):
        inputs.list_inputs(str(tmp_path / "_rejects" / "*.txt"))


def test_a_unit_done_twice_writes_the_same_parts_once(fit: Fit, tmp_path: Path) -> None:
    fitted = fit(Task.REGRESSION, trees=10)
    frame = rows(fitted, 40)
    frame.loc[0, "num_0"] = -np.inf
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    unit = inputs.units(inputs.list_inputs(str(tmp_path / "in.parquet")))[0]
    scorer = scorer_for(fitted, pq.read_schema(tmp_path / "in.parquet"))
    output = tmp_path / "out"
    first = score_unit(scorer, unit, output)
    written = pd.read_parquet(output / "part-00000.parquet")
    again = score_unit(scorer, unit, output)  # a retried task
    assert (first.rows, first.rejects) == (again.rows, again.rejects) == (39, 1)
    pd.testing.assert_frame_equal(pd.read_parquet(output), written)
    assert len(pd.read_parquet(output / REJECTS)) == 1
    assert sorted(p.name for p in output.rglob("*")) == [REJECTS, "part-00000.parquet",
                                                         "part-00000.parquet"]  # fmt: skip


def test_unseen_categories_are_counted_as_the_engine_report_counts_them(fit: Fit) -> None:
    fitted = fit(Task.MULTICLASS, trees=10)
    frame = rows(fitted, 50).astype({"cat_0": object, "cat_1": object})
    frame.loc[[1, 4, 9], "cat_0"] = ["zz", " zz ", "yy"]
    frame.loc[2, "cat_1"] = "q"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = scorer_for(fitted, table.schema).score(table.to_batches()[0])
    compiled = compile_pipeline(fitted.pipeline)
    expected = input_report(compiled, frame, compiled.columns(frame))
    assert scored.report.unseen == expected.unseen == {"cat_0": 3, "cat_1": 1}
    assert scored.report.examples == expected.examples
