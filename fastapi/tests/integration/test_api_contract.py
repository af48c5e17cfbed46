"""The running service against its own OpenAPI document (Schemathesis: schema-valid and
schema-violating requests to every operation, no 5xx, answers as documented) and against the
request and answer shapes MLflow clients use for ``mlflow models serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ml_model.model_io import load_pipeline
from tests.support.api import Api, StartApi
from tests.support.mlflow_server import MlflowServer
from tools.processes import cpu_seconds, environ_without

from .conftest import Trainer

MODEL = "api-contract"
KEY = "integration-test-key-0123456789"
# Examples per operation and generation mode: enough to hit every schema branch, small enough
# for the module to stay well under a minute on two cores.
EXAMPLES = 40
CLI = str(Path(sys.executable).parent / "ml-model")


@pytest.fixture(scope="module")
def classifier_api(
    start_api_module: StartApi, train_module: Trainer, mlflow_server: MlflowServer
) -> Iterator[Api]:
    train_module("classification.yaml", MODEL)
    with start_api_module(MODEL, mlflow_server.url, max_rows="50") as api:
        api.wait_ready()
        yield api


def test_openapi_fuzzing_finds_no_server_error(classifier_api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{classifier_api.url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /predict",
        "POST /invocations",
        "POST /admin/reload",
        "GET /ready",
        "GET /model",
    }
    calls = 0
    for operation in operations:
        # schema-violating data exists only for operations that take a body
        has_body = any(True for _ in operation.body)
        modes = [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if has_body else [])]
        for mode in modes:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=classifier_api.url, checks=checks)

            exercise()
    assert calls > 100


def test_valid_bodies_from_the_schema_are_predicted(classifier_api: Api) -> None:
    """Positive examples of /predict must be answered 200 with one label per row."""
    schema = schemathesis.openapi.from_url(f"{classifier_api.url}/openapi.json")
    predict = next(op.ok() for op in schema.get_all_operations() if op.ok().path == "/predict")

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
    @given(case=predict.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def exercise(case: Any) -> None:
        response = case.call(base_url=classifier_api.url)
        assert response.status_code == 200, response.text
        rows = len(case.body) if isinstance(case.body, list) else 1
        assert len(response.json()["predictions"]) == rows

    exercise()


def test_mlflow_clients_work_unchanged(classifier_api: Api) -> None:
    """``/invocations`` takes the body MLflow's docs build from pandas and answers like
    ``mlflow models serve``."""
    frame = pd.DataFrame(classifier_api.get("/model").json()["input_example"])
    frame.loc[0, "island"] = None
    frame.loc[1, "bill_length_mm"] = np.nan
    expected = load_pipeline(f"models:/{MODEL}/1").predict(frame.fillna(np.nan)).tolist()
    for orient, key in (("split", "dataframe_split"), ("records", "dataframe_records")):
        body = {key: json.loads(frame.to_json(orient=orient, index=False))}
        answer = classifier_api.post("/invocations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}


def test_api_keys(
    classifier_api: Api, start_api_module: StartApi, mlflow_server: MlflowServer
) -> None:
    """The same model behind keys: predictions and admin need one, probes do not."""
    record = classifier_api.get("/model").json()["input_example"][0]
    assert classifier_api.post("/predict", json=record).status_code == 200  # no keys: open
    with start_api_module(MODEL, mlflow_server.url, keys=f"{KEY},another-key-0123456789") as api:
        api.wait_ready()
        refused = api.post("/predict", json=record)
        assert refused.status_code == 401
        assert refused.json()["detail"][0]["msg"].startswith("missing API key")
        wrong = {"Authorization": "Bearer wrong"}
        assert api.post("/predict", json=record, headers=wrong).status_code == 401
        assert api.post("/admin/reload").status_code == 401
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert api.post("/predict", json=record, headers=bearer).status_code == 200
        assert api.post("/predict", json=record, headers={"X-API-Key": KEY}).status_code == 200
        records = {"dataframe_records": [record]}
        assert api.post("/invocations", json=records, headers=bearer).status_code == 200
        assert api.post("/admin/reload", headers=bearer).json()["outcome"] == "unchanged"
        for path in ("/health", "/ready", "/metrics"):
            assert api.get(path).status_code == 200


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_batch_scoring_predicts_what_the_api_serves(
    classifier_api: Api, mlflow_server: MlflowServer, tmp_path: Path, fmt: str
) -> None:
    """``ml-model predict`` streams a file through the same engine: chunk by chunk, it writes
    the labels and probabilities the API answers for the same rows."""
    frame = pd.DataFrame(classifier_api.get("/model").json()["input_example"])
    frame = pd.concat([frame] * 8, ignore_index=True)  # 40 rows, within the API's max_rows
    frame.loc[3, "island"] = None
    frame.loc[5, "island"] = "  Dream "
    frame.loc[7, "island"] = "Atlantis"  # never seen in training
    frame.loc[9, "bill_length_mm"] = np.nan
    source, scored = tmp_path / f"rows.{fmt}", tmp_path / "scored.csv"
    frame.to_csv(source, index=False) if fmt == "csv" else frame.to_parquet(source)
    command = ["predict", "--model-uri", f"models:/{MODEL}/1", "--chunk-rows", "7"]
    done = subprocess.run(  # noqa: PLW1510 - the test reads returncode
        [CLI, *command, "--input", str(source), "--output", str(scored)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environ_without("MLFLOW_"), "MLFLOW_TRACKING_URI": mlflow_server.url},
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(frame)} predictions" in done.stdout
    batch = pd.read_csv(scored)
    records = json.loads(frame.to_json(orient="records"))
    answer = classifier_api.post("/predict", json=records).json()
    assert batch["prediction"].tolist() == answer["predictions"]
    columns = [f"probability_{label}" for label in answer["classes"]]
    np.testing.assert_allclose(batch[columns].to_numpy(), answer["probabilities"], rtol=1e-6)


def resident_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        / 1024
    )


def test_large_hostile_bodies_leave_no_memory_behind(classifier_api: Api) -> None:
    """Megabytes of keys or columns: refused from their structure, and the memory their
    reading took is returned to the system (not kept by the allocator for later)."""
    keys = b"{" + b",".join(b'"k%d":1' % i for i in range(800_000)) + b"}"
    columns = b'{"dataframe_split": {"columns": [%s], "data": [[]]}}' % b",".join(
        [b'"x"'] * 1_500_000
    )
    pid = classifier_api.process.popen.pid
    before = resident_mib(pid)
    for _ in range(3):
        for path, body, status in (("/predict", keys, 422), ("/invocations", columns, 400)):
            answer = classifier_api.post(
                path, data=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == status, answer.text[:300]
            assert "refused without reading them" in answer.text
    assert resident_mib(pid) - before < 10


def test_large_bodies_are_decoded_in_the_decoder_process(classifier_api: Api) -> None:
    """Decoding holds the interpreter lock the event loop needs: large bodies cost the
    serving process little more than moving their bytes; its decoder process (a child, like
    the prediction log's writer) does the work."""
    server = classifier_api.process.popen.pid
    keys = b"{" + b",".join(b'"k%d":1' % i for i in range(800_000)) + b"}"

    def refused() -> None:
        answer = classifier_api.post(
            "/predict", data=keys, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422 and "refused without reading them" in answer.text

    refused()  # starts the decoder process (this body is decoded in the thread pool)
    refused()  # the first through the process: waits for it to be ready
    children = [
        int(pid) for pid in Path(f"/proc/{server}/task/{server}/children").read_text().split()
    ]
    assert children, "the decoder process runs"

    def used() -> tuple[float, float]:
        server_seconds = cpu_seconds(server)
        assert server_seconds is not None
        return server_seconds, sum(filter(None, map(cpu_seconds, children)))

    before = used()
    for _ in range(5):
        refused()
    after = used()
    served, decoded = after[0] - before[0], after[1] - before[1]
    print(f"serving process {served:.3f} s, its children {decoded:.3f} s")
    assert decoded > served
