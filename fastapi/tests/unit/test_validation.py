"""Input validation: every problem named by field and row, all of them at once; the fast path
and the slow path accept exactly the same inputs."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest

from ml_model.engine import Columns
from prediction_api.errors import MAX_PROBLEMS, InputError, error_body
from prediction_api.features import Feature, Kind
from prediction_api.http import parse_json
from prediction_api.inputs.validation import Validator

FEATURES = (
    Feature("length", Kind.NUMERIC),
    Feature("count", Kind.NUMERIC, mlflow_type="long"),
    Feature("island", Kind.CATEGORICAL, mlflow_type="string"),
    Feature("sex", Kind.CATEGORICAL, mlflow_type="string"),
)
GOOD = {"length": 1.5, "count": 3, "island": "Dream", "sex": None}


@pytest.fixture
def validator() -> Validator:
    return Validator(FEATURES, max_rows=5)


def problems(call: Any, *args: Any) -> list[dict[str, Any]]:
    with pytest.raises(InputError) as caught:
        call(*args)
    return caught.value.problems


def short(items: list[dict[str, Any]]) -> list[tuple[Any, Any, str]]:
    return [(p["row"], p["field"], p["type"]) for p in items]


def test_one_record_and_a_list_give_the_same_values(validator: Validator) -> None:
    one = validator.predict_body(GOOD)
    many = validator.predict_body([GOOD, {**GOOD, "length": None}])
    assert one.rows == 1 and many.rows == 2
    np.testing.assert_array_equal(one.numeric, [[1.5, 3.0]])
    assert math.isnan(many.numeric[1, 0])
    assert many.categorical == (("Dream", "Dream"), (None, None))


def test_every_problem_is_reported_with_row_and_field(validator: Validator) -> None:
    body = [
        GOOD,
        {"length": "1.5", "count": True, "island": 3, "extra": 1},
        "not a record",
        {**GOOD, "count": None, "sex": ["x"]},
    ]
    found = short(problems(validator.predict_body, body))
    assert found == [
        (1, "sex", "missing"),
        (1, "extra", "extra_forbidden"),
        (1, "length", "type_error"),
        (1, "count", "type_error"),
        (1, "island", "type_error"),
        (2, None, "type_error"),
        (3, "sex", "type_error"),
    ]


def test_messages_say_what_was_expected_and_got(validator: Validator) -> None:
    found = problems(validator.predict_body, {**GOOD, "length": "12", "island": 4})
    assert {p["field"]: p["msg"] for p in found} == {
        "length": "expected a number or null, got string",
        "island": "expected a string or null, got number",
    }
    assert found[0]["loc"] == ["body", "length"] and found[0]["row"] == 0


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_are_refused_by_field(validator: Validator, token: bytes) -> None:
    body = json.loads(b'[{"length": %s, "count": 1, "island": "a", "sex": "b"}]' % token)
    found = problems(validator.predict_body, body)
    assert short(found) == [(0, "length", "finite_number")]


def test_integers_beyond_float_range_are_refused(validator: Validator) -> None:
    found = problems(validator.predict_body, [{**GOOD, "count": 10**400}])
    assert short(found) == [(0, "count", "finite_number")]


def test_booleans_are_not_numbers(validator: Validator) -> None:
    assert short(problems(validator.predict_body, [{**GOOD, "count": False}])) == [
        (0, "count", "type_error")
    ]


@pytest.mark.parametrize(
    ("body", "kind"),
    [([], "too_short"), ([GOOD] * 6, "too_long"), ("text", "type_error"), (3, "type_error")],
)
def test_batch_shape_problems(validator: Validator, body: Any, kind: str) -> None:
    assert [p["type"] for p in problems(validator.predict_body, body)] == [kind]


def test_unseen_blank_and_padded_categories_pass_validation(validator: Validator) -> None:
    batch = validator.predict_body([{**GOOD, "island": "Atlantis", "sex": "  "}])
    assert batch.categorical == (("Atlantis",), ("  ",))  # trimmed by the encoder


def test_optional_features_may_be_left_out() -> None:
    optional = Validator((*FEATURES[:3], Feature("sex", Kind.CATEGORICAL, False, "string")), 10)
    record = {k: v for k, v in GOOD.items() if k != "sex"}
    assert optional.predict_body(record).categorical[1] == (None,)
    assert short(problems(optional.predict_body, {"length": 1})) == [
        (0, "count", "missing"),
        (0, "island", "missing"),
    ]


def test_problems_beyond_the_cap_are_counted_not_collected() -> None:
    wide = Validator(FEATURES, max_rows=10_000)
    body = [{**GOOD, "length": "x", "island": 1} for _ in range(3000)]
    with pytest.raises(InputError) as caught:
        wide.predict_body(body)
    listed = caught.value.problems
    assert len(listed) == MAX_PROBLEMS and caught.value.omitted == 6000 - MAX_PROBLEMS
    shown = orjson.loads(error_body(listed, caught.value.omitted))["detail"]
    assert shown[-1]["type"] == "truncated"
    assert shown[-1]["msg"] == f"{6000 - MAX_PROBLEMS} more problems not listed"


@pytest.mark.parametrize(
    "body",
    [
        [{f"k{i}": 1 for i in range(200_000)}],  # one record, 200k unknown keys
        [GOOD, {**GOOD, **{f"k{i}": 1 for i in range(200_000)}}, "not a record"],
    ],
)
def test_records_far_wider_than_the_model_are_refused_as_a_whole(body: Any) -> None:
    wide = Validator(FEATURES, max_rows=10)
    found = problems(wide.predict_body, body)
    assert [p["type"] for p in found] == ["too_wide"]
    row = 0 if len(body) == 1 else 1
    assert found[0]["row"] == row
    assert found[0]["msg"].startswith(f"{len(body[row])} fields; the model has 4 features")


def test_keys_up_to_the_width_limit_are_named_one_by_one() -> None:
    wide = Validator(FEATURES, max_rows=10)
    extra = {f"k{i}": 1 for i in range(wide.max_keys - len(FEATURES))}
    found = problems(wide.predict_body, {**GOOD, **extra})
    assert len(found) == len(extra) and {p["type"] for p in found} == {"extra_forbidden"}


def test_invalid_utf8_is_left_to_the_json_parser(validator: Validator) -> None:
    assert validator.decode_predict(b'{"\xff": 1}') is None
    assert validator.decode_predict(b'{"length": "\xff"}') is None


def random_value(rng: np.random.Generator) -> Any:
    choice = rng.integers(10)
    options: list[Any] = [
        None,
        float(rng.normal()),
        int(rng.integers(-5, 5)),
        "text",
        "  ",
        True,
        [1],
        {"a": 1},
        math.inf,
        10**30,
    ]
    return options[choice]


def test_fast_and_slow_paths_agree_on_random_input(validator: Validator) -> None:
    rng = np.random.default_rng(0)
    wide = Validator(FEATURES, max_rows=100)
    for _ in range(300):
        records: list[Any] = []
        for _ in range(int(rng.integers(1, 4))):
            record = {f.name: random_value(rng) for f in FEATURES if rng.random() > 0.05}
            if rng.random() < 0.05:
                record["unknown"] = 1
            records.append(record)
        try:
            fast = wide.records(records, ("body",))
        except InputError as error:
            assert error.problems
            fast = None
        # the slow path alone: the reference behaviour
        try:
            slow = wide._records_slow(records, ("body",), False)
        except InputError:
            slow = None
        assert (fast is None) == (slow is None), records
        if fast is not None and slow is not None:
            np.testing.assert_array_equal(fast.numeric, slow.numeric)
            assert fast.categorical == slow.categorical
            assert all(
                isinstance(v, str) or v is None for column in fast.categorical for v in column
            )


def mostly_valid(feature: Feature, rng: np.random.Generator) -> Any:
    """A valid value for ``feature`` nine times in ten, else anything ``random_value`` gives."""
    if rng.random() < 0.1:
        return random_value(rng)
    if feature.kind is Kind.NUMERIC:
        return [None, float(rng.normal()), int(rng.integers(-5, 5))][int(rng.integers(3))]
    return [None, "Dream", " Biscoe ", "", "\u00e9"][int(rng.integers(5))]


def reference(validator: Validator, body: bytes) -> Any:
    """What the record path makes of a body: a Columns, or the InputError's problems."""
    try:
        return validator.predict_body(parse_json(body))
    except InputError as error:
        return error.problems


@pytest.mark.parametrize("optional", [False, True])
def test_typed_decoder_agrees_with_the_record_path_on_random_bodies(optional: bool) -> None:
    features = (*FEATURES[:3], Feature("sex", Kind.CATEGORICAL, not optional, "string"))
    wide = Validator(features, max_rows=3)
    rng = np.random.default_rng(1)
    decoded = 0
    for _ in range(600):
        records: list[Any] = []
        for _ in range(int(rng.integers(0, 5))):
            record = {f.name: mostly_valid(f, rng) for f in features if rng.random() > 0.03}
            if rng.random() < 0.03:
                record["unknown"] = 1
            records.append(record)
        payload: Any = records[0] if len(records) == 1 and rng.random() < 0.5 else records
        body = json.dumps(payload).encode()  # NaN/Infinity tokens and 10**30 included
        expected = reference(wide, body)
        try:
            batch = wide.decode_predict(body)
        except InputError as error:  # only for problems the record path names the same way
            assert error.problems == expected, body
            continue
        if batch is None:  # refused by the decoder: the record path decides
            continue
        decoded += 1
        assert isinstance(expected, Columns), body
        assert batch.rows == expected.rows and batch.categorical == expected.categorical
        np.testing.assert_array_equal(batch.numeric, expected.numeric)
    assert decoded > 50  # valid bodies do take the typed decoder


@pytest.mark.parametrize(
    "body",
    [
        b'{"length": 1, "length": 2.5, "count": 3, "island": "a", "sex": null}',  # last wins
        b'[{"length": 12345678901234567890123, "count": -0, "island": "\\u00e9", "sex": " "}]',
    ],
)
def test_typed_decoder_reads_awkward_json_like_the_record_path(
    validator: Validator, body: bytes
) -> None:
    batch, expected = validator.decode_predict(body), reference(validator, body)
    assert batch is not None and isinstance(expected, Columns)
    np.testing.assert_array_equal(batch.numeric, expected.numeric)
    assert batch.categorical == expected.categorical


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"NaN", b"[1]", b'{"length": "1"}', b'[{"length": 1e400}]', b'{"x": 1}'],
)
def test_bodies_the_typed_decoder_refuses_are_left_to_the_record_path(
    validator: Validator, body: bytes
) -> None:
    assert validator.decode_predict(body) is None


def test_errors_serialize_even_with_lone_surrogates(validator: Validator) -> None:
    body = json.loads('[{"length": 1, "count": 1, "island": "a", "sex": "b", "\\ud800": 1}]')
    found = problems(validator.predict_body, body)
    assert orjson.loads(error_body(found))["detail"][0]["field"] == "\\ud800"
