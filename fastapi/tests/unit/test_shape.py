"""Large hostile bodies are refused from their structure alone, before the decoders build
anything from them: bounded time and memory whatever the body holds."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from prediction_api.errors import ApiError, InputError
from prediction_api.features import Feature, Kind
from prediction_api.inputs.scoring import ScoringDecoder
from prediction_api.inputs.shape import CHECKED_BYTES, Bounds

pytestmark = pytest.mark.unit

FEATURES = (
    Feature("length", Kind.NUMERIC),
    Feature("island", Kind.CATEGORICAL, mlflow_type="string"),
)
BOUNDS = Bounds(max_rows=1000, features=len(FEATURES))  # 104 keys
GOOD = {"length": 1.5, "island": "Dream"}
JSON = b"application/json"


def many_keys(count: int) -> bytes:
    return b"{" + b",".join(b'"k%d":1' % i for i in range(count)) + b"}"


def python_peak_mib(call: Any, *args: Any) -> float:
    """The peak of Python's own allocations while ``call`` runs (the decoders' objects)."""
    tracemalloc.start()
    try:
        call(*args)
    except ApiError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (
            many_keys(800_000),
            "too_wide",
            "/ holds 800000 items; the model has 2 features, and more than 104",
        ),
        (json.dumps([GOOD] * 1001).encode(), "too_long", "/ holds 1001 rows; more than 1000"),
        (
            json.dumps([GOOD, GOOD, {**GOOD, **{f"k{i}": 1 for i in range(5000)}}]).encode(),
            "too_wide",
            "/2 holds 5002 items",
        ),
    ],
)
def test_predict_bodies_out_of_bounds_are_refused_unread(
    body: bytes, kind: str, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        BOUNDS.check_predict(body)
    assert [p["type"] for p in caught.value.problems] == [kind]
    assert caught.value.problems[0]["msg"].startswith(message)
    assert python_peak_mib(BOUNDS.check_predict, body) < 1


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (
            {"dataframe_split": {"columns": ["x"] * 1_500_000, "data": [[]]}},
            "/dataframe_split/columns",
        ),
        (
            {"dataframe_split": {"columns": ["length"], "data": [[1.0]] * 5000}},
            "/dataframe_split/data",
        ),
        (
            {"dataframe_split": {"columns": ["length"], "data": [[1.0], [2.0] * 9000]}},
            "/dataframe_split/data/1",
        ),
        ({"dataframe_records": [GOOD], **{f"k{i}": 1 for i in range(200_000)}}, "/ holds"),
        ({"instances": [GOOD, {f"k{i}": 1 for i in range(9000)}]}, "/instances/1"),
        ({"inputs": {"length": [1.0] * 9000, "island": ["Dream"] * 9000}}, "/inputs/length"),
    ],
)
def test_invocations_bodies_out_of_bounds_get_mlflows_error_unread(
    payload: dict[str, Any], where: str
) -> None:
    body = json.dumps(payload).encode()
    decoder = ScoringDecoder(FEATURES, BOUNDS)
    with pytest.raises(ApiError) as caught:
        decoder.decode(body, JSON)
    assert caught.value.status == 400 and caught.value.error_code == "BAD_REQUEST"
    assert where in caught.value.problems[0]["msg"]
    assert python_peak_mib(decoder.decode, body, JSON) < 1


def test_nan_and_infinity_tokens_do_not_hide_a_bodys_shape() -> None:
    """MLflow accepts these tokens; a body holding them is bounded all the same."""
    record = b'{"length": NaN, "island": "NaN-Infinity", "x": -Infinity, "y": Infinity'
    wide = record + b"".join(b', "k%d": NaN' % i for i in range(5000)) + b"}"
    with pytest.raises(InputError) as caught:
        BOUNDS.check_predict(b"[" + wide + b"]")
    assert caught.value.problems[0]["msg"].startswith("/0 holds 5004 items")
    with pytest.raises(ApiError) as refused:
        ScoringDecoder(FEATURES, BOUNDS).decode(b'{"dataframe_records": [%s]}' % wide, JSON)
    assert "/dataframe_records/0 holds 5004 items" in refused.value.problems[0]["msg"]
    many = b"[" + b",".join([b'{"length": NaN, "island": "Dream"}'] * 1000) + b"]"
    BOUNDS.check_predict(many)  # within bounds: on to the decoders


def test_bodies_within_bounds_and_small_or_unreadable_ones_pass_to_the_decoders() -> None:
    BOUNDS.check_predict(json.dumps([GOOD] * 1000).encode())  # the row limit exactly
    small = many_keys(2000)  # far too wide, but small: the validator names its problems
    assert len(small) <= CHECKED_BYTES
    BOUNDS.check_predict(small)
    BOUNDS.check_predict(b"[" + b'{"length": 1.0,' * 5000 + b"{}]")  # malformed: the parser's
    columns = ScoringDecoder(FEATURES, BOUNDS).decode(
        json.dumps({"dataframe_records": [GOOD] * 1000}).encode(), JSON
    )
    assert columns.columns.rows == 1000
