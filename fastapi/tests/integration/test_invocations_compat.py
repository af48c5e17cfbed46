"""``POST /invocations`` as a drop-in for ``mlflow models serve``: the same bodies go to a real
``mlflow models serve`` and to the API, both serving one registered version, and must get the
same status class and the same JSON (predictions equal after parsing; errors MLflow-shaped with
the same ``error_code``, messages free).

The model is the penguins regression with ``year`` kept: its signature declares ``year`` as
``long`` (integers, never missing in training), the other measurements ``double``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api, StartApi, mlflow_models_serve
from tests.support.mlflow_server import MlflowServer

from .conftest import Trainer

MODEL = "invocations-compat"
JSON = "application/json"
COLUMNS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "sex",
    "year",
]
ROWS: list[list[Any]] = [
    ["Adelie", "Torgersen", 39.1, 18.7, 181.0, "male", 2007],
    ["Gentoo", "Biscoe", 46.1, 13.2, 211.0, "female", 2008],
    ["Chinstrap", "Dream", 49.5, 19.0, 200.0, "male", 2009],
]


def records(rows: list[list[Any]] = ROWS, columns: list[str] = COLUMNS) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


FLIPPER = "flipper_length_mm"


def split(rows: list[list[Any]] = ROWS, columns: list[str] = COLUMNS) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": rows}}


def with_value(column: str, value: Any, row: int = 0) -> list[list[Any]]:
    """ROWS with ``value`` in ``column`` of ``row``."""
    changed = [list(r) for r in ROWS]
    changed[row][COLUMNS.index(column)] = value
    return changed


SPLIT = split()["dataframe_split"]


def csv(rows: list[list[Any]] = ROWS, columns: list[str] = COLUMNS) -> bytes:
    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    lines = [",".join(columns), *(",".join(map(cell, row)) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


def parquet() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(ROWS, columns=COLUMNS).to_parquet(buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    content_type: str | None = JSON


def case(name: str, payload: Any, content_type: str | None = JSON) -> Case:
    return Case(name, json.dumps(payload).encode(), content_type)


CASES = [
    # the four JSON formats, CSV and Parquet
    case("dataframe_split", split()),
    case("dataframe_split with index", {"dataframe_split": {"index": [5, 6, 7], **SPLIT}}),
    case("dataframe_records", {"dataframe_records": records()}),
    case("instances (records)", {"instances": records()}),
    case("inputs (records)", {"inputs": records()}),
    case("inputs (columns)", {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}),
    Case("text/csv", csv(), "text/csv"),
    Case("text/csv, missing categorical cell", csv(with_value("sex", None)), "text/csv"),
    Case("text/csv, missing double cell", csv(with_value(FLIPPER, None)), "text/csv"),
    Case("text/csv, missing long cell", csv(with_value("year", None)), "text/csv"),
    Case("text/csv, NA marker", csv(with_value(FLIPPER, "n/a")), "text/csv"),
    Case("text/csv, non-number", csv(with_value(FLIPPER, "abc")), "text/csv"),
    Case("text/csv, extra column", csv([[*r, 1] for r in ROWS], [*COLUMNS, "x"]), "text/csv"),
    Case("text/csv, missing column", csv([r[1:] for r in ROWS], COLUMNS[1:]), "text/csv"),
    Case("text/csv, empty body", b"", "text/csv"),
    Case("parquet", parquet(), "application/vnd.apache.parquet"),
    Case("charset parameter", json.dumps(split()).encode(), "application/json; charset=utf-8"),
    # params and other keys
    case("params", {**split(), "params": {"threshold": 0.5}}),
    case("unknown top-level key", {**split(), "other": 1}),
    case("two formats", {**split(), "dataframe_records": records()}),
    case("no format", {"data": ROWS}),
    case("unknown key in dataframe_split", {"dataframe_split": {**SPLIT, "dtypes": {}}}),
    # missing values
    case("null double", split(with_value(FLIPPER, None))),
    case("null categorical", split(with_value("sex", None))),
    Case("NaN token", json.dumps(split(with_value(FLIPPER, float("nan")))).encode()),
    Case("Infinity token", json.dumps(split(with_value(FLIPPER, float("inf")))).encode()),
    case("null long", split(with_value("year", None))),
    case(
        "record without a categorical key",
        {
            "dataframe_records": records()[:1]
            + [{k: v for k, v in r.items() if k != "sex"} for r in records()[1:]]
        },
    ),
    # value conversions
    case("numeric string", split(with_value(FLIPPER, "200"))),
    case("padded numeric string", split(with_value(FLIPPER, " 200.5 "))),
    case("string nan", split(with_value(FLIPPER, "nan"))),
    case("string inf", split(with_value(FLIPPER, "inf"))),
    case("non-numeric string", split(with_value(FLIPPER, "n/a"))),
    case("boolean for a double", split(with_value(FLIPPER, True))),
    case("booleans for a whole double column", split([[*r[:4], True, *r[5:]] for r in ROWS])),
    case("boolean for a long", split(with_value("year", True))),
    case("integer for a double", split(with_value(FLIPPER, 200))),
    case("integer-typed columns (long)", {"dataframe_records": records()}),
    case("float for a long", split(with_value("year", 2008.9))),
    case("whole float for a long", split(with_value("year", 2008.0))),
    case("numeric string for a long", split(with_value("year", "2008"))),
    case("number for a string", split(with_value("island", 3))),
    case("boolean for a string", split(with_value("sex", True))),
    case(
        "padded and blank strings",
        split([*with_value("island", " Dream ", 0)[:1], with_value("sex", " ", 1)[1], ROWS[2]]),
    ),
    case("unseen category", split(with_value("island", "Atlantis"))),
    # columns
    case("extra column", split([[*r, 1.5] for r in ROWS], [*COLUMNS, "extra"])),
    case("extra field in records", {"dataframe_records": [{**r, "x": "y"} for r in records()]}),
    case("missing column", split([r[1:] for r in ROWS], COLUMNS[1:])),
    case("reordered columns", split([r[::-1] for r in ROWS], COLUMNS[::-1])),
    # malformed requests
    Case("malformed JSON", b'{"dataframe_split": {'),
    case("JSON array", [records()]),
    case("records not a list", {"dataframe_records": records()[0]}),
    case("split not an object", {"dataframe_split": ROWS}),
    case("ragged split rows", split([ROWS[0], ROWS[1][:3]])),
    case("empty records", {"dataframe_records": []}),
    case("empty split", split([])),
    Case("wrong content type", json.dumps(split()).encode(), "text/plain"),
    Case("unknown content-type parameter", json.dumps(split()).encode(), "application/json; v=2"),
    Case("other charset", json.dumps(split()).encode(), "application/json; charset=latin-1"),
]


@dataclass(frozen=True)
class Servers:
    mlflow: str
    api: Api


@pytest.fixture(scope="module")
def servers(
    start_api_module: StartApi,
    train_module: Trainer,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Servers]:
    result = train_module(
        "regression.yaml", MODEL, "data.drop_columns=[]", "model.params.n_estimators=40"
    )
    uri = f"models:/{MODEL}/{result.version}"
    folder = tmp_path_factory.mktemp("mlflow-serve")
    with (
        mlflow_models_serve(uri, mlflow_server.url, folder) as mlflow_url,
        start_api_module(MODEL, mlflow_server.url) as api,
    ):
        api.wait_ready()
        yield Servers(mlflow_url, api)


def post(url: str, item: Case) -> requests.Response:
    headers = {} if item.content_type is None else {"Content-Type": item.content_type}
    return requests.post(f"{url}/invocations", data=item.body, headers=headers, timeout=60)


def test_signature_declares_the_integer_column_long(servers: Servers) -> None:
    types = {c["name"]: c["type"] for c in servers.api.get("/model").json()["signature"]["inputs"]}
    assert types["year"] == "long"
    assert types["bill_length_mm"] == "double"


@pytest.mark.parametrize("item", CASES, ids=[c.name for c in CASES])
def test_same_answer_as_mlflow_models_serve(servers: Servers, item: Case) -> None:
    theirs = post(servers.mlflow, item)
    ours = post(servers.api.url, item)
    assert ours.status_code < 500, ours.text
    assert ours.status_code // 100 == theirs.status_code // 100, (theirs.text, ours.text)
    assert ours.headers["content-type"] == JSON
    if theirs.status_code == 200:  # float32 predictions written as doubles, as MLflow does
        assert ours.json() == theirs.json()
        return
    mine = ours.json()
    assert set(mine) == {"error_code", "message"}, mine
    assert isinstance(mine["message"], str) and mine["message"]
    if theirs.headers["content-type"].startswith(JSON):
        assert mine["error_code"] == theirs.json()["error_code"], (theirs.text, ours.text)
    else:  # MLflow answers an unsupported content type with plain text
        assert ours.status_code == theirs.status_code, theirs.text


def input_values(api: Api) -> dict[tuple[str, str], float]:
    """``prediction_api_input_values`` by (feature, kind), from ``/metrics``."""
    families = text_string_to_metric_families(api.get("/metrics").text)
    return {
        (sample.labels["feature"], sample.labels["kind"]): sample.value
        for family in families
        if family.name == "prediction_api_input_values"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_metrics_count_unseen_categories_and_conversions(servers: Servers) -> None:
    before = input_values(servers.api)
    rows = [
        with_value("island", "Atlantis", 0)[0],
        with_value("island", " Dream ", 1)[1],  # padded, but known
        with_value(FLIPPER, "200", 2)[2],
    ]
    rows[1][COLUMNS.index("sex")] = "unknown"
    assert post(servers.api.url, case("dirty", split(rows))).status_code == 200
    assert servers.api.post("/predict", json=records(rows[:2])).status_code == 200
    after = input_values(servers.api)

    def added(feature: str, kind: str) -> float:
        return after.get((feature, kind), 0.0) - before.get((feature, kind), 0.0)

    assert added("island", "unseen_category") == 2  # one per route
    assert added("sex", "unseen_category") == 2
    assert added(FLIPPER, "coerced") == 1
    assert added("species", "unseen_category") == 0


def test_missing_content_type_is_a_client_error(servers: Servers) -> None:
    """MLflow fails with a 500 when the header is absent; the API names the problem."""
    answer = post(servers.api.url, Case("no content type", json.dumps(split()).encode(), None))
    assert answer.status_code == 415
    assert "Content-Type" in answer.json()["message"]
