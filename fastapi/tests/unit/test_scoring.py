"""``/invocations`` decoding: MLflow's formats and content types, its value conversions, its
error codes; the typed one-pass path and the general path agree. (The integration test
``test_invocations_compat`` holds all of it against a real ``mlflow models serve``.)"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from ml_model.config import Task
from ml_model.engine import Columns, compile_pipeline
from prediction_api.errors import ApiError
from prediction_api.features import Feature, Kind
from prediction_api.inputs.scoring import ScoringDecoder
from prediction_api.inputs.shape import Bounds
from prediction_api.inputs.tables import json_table
from prediction_api.inputs.unseen import UnseenCounter

FEATURES = (
    Feature("length", Kind.NUMERIC),
    Feature("count", Kind.NUMERIC, mlflow_type="long"),
    Feature("island", Kind.CATEGORICAL, mlflow_type="string"),
    Feature("sex", Kind.CATEGORICAL, mlflow_type="string", required=False),
)
COLUMNS = ["length", "count", "island", "sex"]
ROWS = [[1.5, 3, "Dream", None], [2, 4, "Biscoe", "male"]]
JSON = b"application/json"


@pytest.fixture
def decoder() -> ScoringDecoder:
    return ScoringDecoder(FEATURES, Bounds(5, len(FEATURES)))


def decode(decoder: ScoringDecoder, payload: Any, content_type: bytes = JSON) -> Columns:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decoder.decode(body, content_type).columns


def refused(decoder: ScoringDecoder, payload: Any, content_type: bytes = JSON) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode(decoder, payload, content_type)
    return caught.value


def same(a: Columns, b: Columns) -> bool:
    return (
        a.rows == b.rows
        and np.array_equal(a.numeric, b.numeric, equal_nan=True)
        and a.categorical == b.categorical
    )


RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
BODIES: list[tuple[Any, bytes]] = [
    ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, JSON),
    ({"dataframe_split": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in ROWS]}}, JSON),
    ({"dataframe_records": RECORDS, "params": {"x": 1}, "other": 2}, JSON),
    ({"instances": RECORDS}, JSON),
    ({"inputs": RECORDS}, JSON),
    ({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}, JSON),
    ({"dataframe_records": [{**r, "extra": [1]} for r in RECORDS]}, JSON),
    (b"length,count,island,sex,x\n1.5,3,Dream,,1\n2,4,Biscoe,male,2\n", b"text/csv"),
    (json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}).encode(), JSON),
]


@pytest.mark.parametrize(("body", "content_type"), BODIES)
def test_every_format_gives_the_same_columns(
    decoder: ScoringDecoder, body: Any, content_type: bytes
) -> None:
    columns = decode(decoder, body, content_type)
    np.testing.assert_array_equal(columns.numeric, [[1.5, 3.0], [2.0, 4.0]])
    assert columns.categorical == (("Dream", "Biscoe"), (None, "male"))


@pytest.mark.parametrize(
    ("feature", "value", "expected", "coerced"),
    [
        ("length", None, math.nan, 0),
        ("length", 7, 7.0, 0),
        ("length", True, 1.0, 1),
        ("length", " 200.5 ", 200.5, 1),
        ("length", "nan", math.nan, 1),
        ("count", 2008.9, 2008.0, 1),
        ("count", -2.5, -2.0, 1),
        ("count", "2008", 2008.0, 1),
        ("count", False, 0.0, 1),
        ("island", 3, "3", 1),
        ("island", True, "True", 1),
        ("island", 1.5, "1.5", 1),
        ("island", " Dream ", " Dream ", 0),  # trimmed by the engine, as in training
    ],
)
def test_values_convert_as_mlflow_converts_them(
    decoder: ScoringDecoder, feature: str, value: Any, expected: Any, coerced: int
) -> None:
    rows = [dict(zip(COLUMNS, ROWS[0], strict=True)) | {feature: value}]
    converted = decoder.decode(json.dumps({"dataframe_records": rows}).encode(), JSON)
    position = COLUMNS.index(feature)
    got = (
        converted.columns.numeric[0, position]
        if position < 2
        else converted.columns.categorical[position - 2][0]
    )
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
    assert converted.coerced == ({feature: coerced} if coerced else {})


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("length", "n/a", "is not a number"),
        ("length", [1], "is not a number"),
        ("count", None, "cannot hold missing values"),
        ("count", "2008.5", "is not an integer"),
        ("count", 2.0**70, "64-bit"),
        ("island", {"a": 1}, "is not a string"),
    ],
)
def test_values_mlflow_refuses_are_refused_naming_column_and_row(
    decoder: ScoringDecoder, feature: str, value: Any, words: str
) -> None:
    rows = [RECORDS[0], {**RECORDS[1], feature: value}]
    error = refused(decoder, {"dataframe_records": rows})
    assert error.status == 400 and error.error_code == "BAD_REQUEST"
    message = error.problems[0]["msg"]
    assert f"column '{feature}'" in message and "row 1" in message and words in message


@pytest.mark.parametrize("token", [b"Infinity", b"-Infinity", b"1e400"])
def test_infinities_are_refused_and_nan_is_missing(decoder: ScoringDecoder, token: bytes) -> None:
    body = (
        b'{"dataframe_split": {"columns": ["length", "count", "island"], "data": [[%s, 1, "a"]]}}'
    )
    assert "is not finite" in refused(decoder, body % token).problems[0]["msg"]
    assert np.isnan(decode(decoder, body % b"NaN").numeric[0, 0])


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"dataframe_split": {"columns": COLUMNS[1:], "data": [r[1:] for r in ROWS]}}, "INVALID"),
        ({"dataframe_records": []}, "INVALID"),
        ({"dataframe_split": {"data": ROWS}}, "INVALID"),
        ({"dataframe_split": {"columns": COLUMNS, "data": []}}, "BAD"),
        ({"dataframe_split": {"columns": COLUMNS, "data": [ROWS[0] + [1]]}}, "BAD"),
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS, "dtypes": {}}}, "BAD"),
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS, "index": [1]}}, "BAD"),
        ({"dataframe_records": RECORDS, "instances": RECORDS}, "BAD"),
        ({"data": ROWS}, "BAD"),
        ({"dataframe_records": RECORDS[0]}, "BAD"),
        ({"inputs": {"length": [1, 2], "count": [1]}}, "BAD"),
        ([RECORDS], "BAD"),
        ({"dataframe_records": RECORDS * 3}, "BAD"),  # over max_rows
        (b'{"dataframe_records": [', "BAD"),
    ],
)
def test_bad_bodies_get_mlflow_error_codes(
    decoder: ScoringDecoder, payload: Any, code: str
) -> None:
    error = refused(decoder, payload)
    assert error.status == 400
    assert error.error_code == {"INVALID": "INVALID_PARAMETER_VALUE", "BAD": "BAD_REQUEST"}[code]


def test_short_split_rows_are_padded_with_missing_values(decoder: ScoringDecoder) -> None:
    columns = decode(decoder, {"dataframe_split": {"columns": COLUMNS, "data": [ROWS[0][:3]]}})
    assert columns.categorical == (("Dream",), (None,))


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        (b"application/json", True),
        (b"Application/JSON; charset=UTF-8", True),
        (b"application/json; charset=latin-1", False),
        (b"application/json; format=pandas-split", False),
        (b"text/plain", False),
        (None, False),
    ],
)
def test_content_types(decoder: ScoringDecoder, content_type: Any, accepted: bool) -> None:
    body = json.dumps({"dataframe_records": RECORDS}).encode()
    if accepted:
        assert decoder.decode(body, content_type).columns.rows == 2
    else:
        with pytest.raises(ApiError) as caught:
            decoder.decode(body, content_type)
        assert caught.value.status == 415


def test_csv_is_read_with_the_signature_types(decoder: ScoringDecoder) -> None:
    csv = b"text/csv"
    missing_integer = b"length,count,island\n1.5,,Dream\n"
    assert "CSV" in refused(decoder, missing_integer, csv).problems[0]["msg"]
    assert refused(decoder, b"", csv).status == 400
    marker = decode(decoder, b"length,count,island\nn/a,1,3\n", csv)
    assert np.isnan(marker.numeric[0, 0]) and marker.categorical[0] == ("3",)


def test_the_typed_path_and_the_general_path_agree(decoder: ScoringDecoder) -> None:
    rng = np.random.default_rng(5)
    values: dict[str, list[Any]] = {
        "length": [None, 1, 2.5, -0.0, 1e300, 7],
        "count": [1, 2.0, 2.7, -3.2, 10**15],
        "island": [None, "Dream", " Biscoe ", "", "x"],
        "sex": [None, "male", "female"],
    }
    for _ in range(200):
        rows = [{c: v[rng.integers(len(v))] for c, v in values.items()} for _ in range(3)]
        for payload in (
            {"dataframe_records": rows},
            {
                "dataframe_split": {
                    "columns": COLUMNS,
                    "data": [[r[c] for c in COLUMNS] for r in rows],
                }
            },
        ):
            body = json.dumps(payload).encode()
            typed = decoder._typed(body)
            general = decoder._table(json_table(json.loads(body), decoder.names))
            assert typed is not None and same(typed.columns, general.columns), payload
            assert typed.coerced == general.coerced, payload


def test_unseen_categories_are_counted_per_feature(fit: Any) -> None:
    compiled = compile_pipeline(fit(Task.REGRESSION).pipeline)
    counter = UnseenCounter(compiled)
    first = compiled.categorical[0]
    known = next(iter(first.lookup))
    values = [known, f"  {known} ", None, "", "Atlantis", "Atlantis", " Mu "]
    categorical = [["x"] * len(values) for _ in compiled.categorical]
    categorical[first.position] = values
    other = compiled.categorical[1]
    categorical[other.position] = [next(iter(other.lookup))] * len(values)
    columns = Columns(
        len(values),
        np.zeros((len(values), len(compiled.schema.numeric))),
        tuple(tuple(c) for c in categorical),
    )
    counts = counter.count(columns)
    assert counts[first.name] == 3
    assert other.name not in counts
    assert all(counts[c.name] == len(values) for c in compiled.categorical[2:])
