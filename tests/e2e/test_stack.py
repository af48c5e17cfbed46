"""The compose stack end to end, through the user's entry points: `up -d`, `run --rm train-cpu`,
HTTP on the published ports, `down -v`. The tests run in file order as one scenario; a test
whose earlier step failed is skipped and says which step it needed."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from tests.e2e.helpers import (
    MODEL_NAME,
    SPARK,
    TRAIN_CONFIG,
    Scenario,
    answers,
    connects,
    containers_by_service,
    http,
    non_loopback_ipv4,
    process_uids,
    read_scores,
    registry_champion,
    spark_master_state,
    train,
    wait_for,
    wait_until_healthy,
)
from tools.e2e import compose, images
from tools.e2e.engine import docker_cli
from tools.e2e.proc import LOG_DIR, run

UP_TIMEOUT_S = 900
SPARK_UP_TIMEOUT_S = 300
SPARK_WORKERS = 2  # `up --scale`; the job's own `run` brings them back to SPARK_WORKERS (1)
MONITORING = ("monitoring",)
SPARK_OUTPUT = "/data/scores/penguins-body-mass"  # where score-spark's default command writes
PENGUIN_ROWS = 344  # rows of ml_model/data/penguins.csv, the table score-spark scores
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm")  # read back as text
# A deliberately weak model first (it becomes champion only because it is the first), then the
# default config, which must beat it and take over the alias.
WEAK_CONFIG = (
    "--set", "model.params.n_estimators=15",
    "--set", "model.params.max_depth=1",
    "--set", "model.early_stopping_rounds=null",
)  # fmt: skip
# Containers that may run as root, and why.
ROOT_ALLOWED = {
    "minio-volume": "one-shot `chown` of the minio-data volume (Docker creates named volumes "
    "root-owned) so MinIO can run as uid 1000; no network, exits at once",
}
PENGUIN = {
    "species": "Gentoo",
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 218.0,
    "sex": "female",
}
ADELIE = {
    "species": "Adelie",
    "island": "Torgersen",
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "sex": "male",
}


def api_url(stack: compose.Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.port('API_HOST_PORT')}{path}"


def served_version(body: Any) -> str:
    """The model version an API answer names (top level or under "model")."""
    for holder in (body, body.get("model") if isinstance(body, dict) else None):
        if isinstance(holder, dict) and "version" in holder:
            return str(holder["version"])
    raise AssertionError(f"no model version in the API's answer: {body}")


def predictions(body: Any) -> list[Any]:
    values = body.get("predictions") if isinstance(body, dict) else None
    assert isinstance(values, list), f"no list of predictions in the API's answer: {body}"
    return values


def test_up_with_a_missing_secret_fails_naming_it(stack: compose.Stack, tmp_path: Any) -> None:
    env = compose.write_env(tmp_path / "no-secret.env", stack.settings, drop=["POSTGRES_PASSWORD"])
    without = compose.Stack(env, compose.NO_SECRET_PROJECT)
    result = without.run("up", "-d", check=False, timeout=300)
    assert result.returncode != 0, "`up` succeeded without POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" in result.stderr, f"message does not name it:\n{result.stderr}"
    assert compose.project_resources(compose.NO_SECRET_PROJECT) == {
        "container": [],
        "network": [],
        "volume": [],
    }


def test_up_brings_every_service_to_healthy(stack: compose.Stack, scenario: Scenario) -> None:
    started = time.monotonic()
    # What the README tells users to type: --wait returns once every healthcheck is green.
    wait = ("--wait", "--wait-timeout", str(UP_TIMEOUT_S))
    result = stack.run("up", "-d", *wait, "--no-build", check=False, timeout=UP_TIMEOUT_S + 60)
    assert result.returncode == 0, f"`up -d --wait` failed:\n{result.stdout}{result.stderr}"
    states = wait_until_healthy(stack, timeout=30)
    print(f"healthy after {time.monotonic() - started:.0f}s: {json.dumps(states)}")
    scenario.passed.add("up")


def test_a_second_up_does_not_chown_the_bucket_again(
    stack: compose.Stack, scenario: Scenario
) -> None:
    """Compose v2 re-runs the one-shot volume job on every `up`: it must see the volume is
    MinIO's already instead of walking every object with a recursive chown."""
    scenario.require("up")
    wait = ("--wait", "--wait-timeout", str(UP_TIMEOUT_S))
    result = stack.run("up", "-d", *wait, "--no-build", check=False, timeout=UP_TIMEOUT_S + 60)
    assert result.returncode == 0, f"second `up -d --wait` failed:\n{result.stderr}"
    logs = stack.run("logs", "--no-log-prefix", "minio-volume").stdout.split()
    lines = " ".join(logs)
    assert "/data handed to 1000:1000" in lines, lines
    assert lines.endswith("/data already belongs to 1000:1000"), lines


def test_services_run_as_non_root(stack: compose.Stack, scenario: Scenario) -> None:
    scenario.require("up")
    containers = containers_by_service(stack)
    root_processes, seen = [], {}
    for service, container in sorted(containers.items()):
        if service in ROOT_ALLOWED:
            assert container["State"]["Status"] == "exited", f"{service} still runs"
            assert container["State"]["ExitCode"] == 0
            assert container["HostConfig"]["NetworkMode"] == "none"
            continue
        uids = process_uids(container)
        seen[service] = sorted(set().union(*uids.values()))
        root_processes += [f"{service}: {proc}" for proc, ids in uids.items() if 0 in ids]
    print(f"process uids: {seen}; root allowed: {ROOT_ALLOWED}")
    assert not root_processes, f"processes running as root: {root_processes}"
    assert set(containers) - set(ROOT_ALLOWED) >= {"postgres", "minio", "nginx", "mlflow", "api"}
    # The trainer's image too, as `run` starts it.
    result = stack.run("run", "--rm", "--no-deps", "--entrypoint", "id", "train-cpu", "-u")
    assert result.stdout.strip() not in {"", "0"}, result.stdout


def test_published_ports_are_bound_to_loopback_only(
    stack: compose.Stack, scenario: Scenario
) -> None:
    scenario.require("up")
    published = {}
    for service, container in containers_by_service(stack).items():
        for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published[f"{service} {port}"] = binding["HostIp"]
    assert published, "no published ports"
    assert set(published.values()) == {"127.0.0.1"}, published

    api_port = stack.port("API_HOST_PORT")
    assert stack.run("port", "api", "8000").stdout.strip() == f"127.0.0.1:{api_port}"
    assert connects("127.0.0.1", api_port)
    others = non_loopback_ipv4()
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    reachable = [address for address in others if connects(address, api_port)]
    assert not reachable, f"the API's port {api_port} answers on {reachable}"


def test_first_training_registers_a_champion(stack: compose.Stack, scenario: Scenario) -> None:
    scenario.require("up")
    first = train(stack, "ml-model", "train", "--config", TRAIN_CONFIG, *WEAK_CONFIG)
    assert (first.model, first.version, first.promoted) == (MODEL_NAME, "1", True), first.output
    listing = stack.run("run", "--rm", "train-cpu", "ml-model", "models", "list", MODEL_NAME).stdout
    lines = listing.splitlines()
    assert MODEL_NAME in lines, listing  # the model's header line, then one line per version
    assert any(line.split()[:2] == ["v1", "champion"] for line in lines), listing
    scenario.facts["v1"] = first
    scenario.passed.add("v1")


def test_api_serves_the_champion(stack: compose.Stack, scenario: Scenario) -> None:
    scenario.require("v1")
    wait_for("the API's /ready", lambda: answers(api_url(stack, "/ready")), timeout=180)
    run_id = scenario.facts["v1"].run_id
    model = http("GET", api_url(stack, "/model")).json()
    assert (model.get("name"), served_version(model), model.get("run_id")) == (
        MODEL_NAME,
        "1",
        run_id,
    ), model

    one = http("POST", api_url(stack, "/predict"), PENGUIN)
    assert one.status == 200, one.text
    assert (one.json().get("model"), served_version(one.json())) == (MODEL_NAME, "1"), one.text
    assert len(predictions(one.json())) == 1, one.text
    assert isinstance(predictions(one.json())[0], float), one.text

    batch = http("POST", api_url(stack, "/predict"), [PENGUIN, ADELIE])
    assert batch.status == 200, batch.text
    assert len(predictions(batch.json())) == 2, batch.text
    scenario.passed.add("served-v1")


def test_mlflow_ui_and_registry_show_the_run(stack: compose.Stack, scenario: Scenario) -> None:
    scenario.require("v1")
    base = f"http://127.0.0.1:{stack.port('MLFLOW_HOST_PORT')}"
    ui = http("GET", f"{base}/")
    assert ui.status == 200 and "<html" in ui.text.lower(), ui.text[:300]

    champion = registry_champion(stack)
    run_id = scenario.facts["v1"].run_id
    assert (champion["version"], champion["run_id"]) == ("1", run_id), champion
    got = http("GET", f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}").json()["run"]
    assert got["info"]["status"] == "FINISHED", got["info"]
    experiment_id = got["info"]["experiment_id"]
    found = http(
        "POST", f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}
    ).json()
    assert run_id in {r["info"]["run_id"] for r in found.get("runs", [])}, found

    for name, url in {
        "pgAdmin": f"http://127.0.0.1:{stack.port('PGADMIN_HOST_PORT')}/misc/ping",
        "MinIO console (through nginx)": (
            f"http://127.0.0.1:{stack.port('MINIO_CONSOLE_HOST_PORT')}/"
        ),
    }.items():
        assert answers(url) is not None, f"{name} does not answer on {url}"


def test_artifacts_land_in_the_bucket_through_nginx(
    stack: compose.Stack, scenario: Scenario
) -> None:
    scenario.require("v1")
    settings = stack.settings
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{stack.port('MINIO_API_HOST_PORT')}",
        aws_access_key_id=settings["MINIO_ROOT_USER"],
        aws_secret_access_key=settings["MINIO_ROOT_PASSWORD"],
        region_name="us-east-1",
    )
    bucket = settings.get("MLFLOW_ARTIFACTS_BUCKET") or "mlflow"
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    run_id = scenario.facts["v1"].run_id
    assert any(run_id in key for key in keys), f"nothing of run {run_id} in {bucket}: {keys}"
    assert any(key.endswith("/MLmodel") for key in keys), f"no MLmodel in {bucket}: {keys}"


def test_retrain_better_config_is_served_without_restart(
    stack: compose.Stack, scenario: Scenario
) -> None:
    scenario.require("served-v1")
    before = containers_by_service(stack)["api"]
    second = train(stack)  # exactly `docker compose run --rm train-cpu`: the default config
    assert (second.version, second.promoted) == ("2", True), second.output
    assert registry_champion(stack)["version"] == "2"

    def serving_v2() -> dict[str, Any] | None:
        model = http("GET", api_url(stack, "/model")).json()
        return model if served_version(model) == "2" else None

    model = wait_for("the API to serve v2", serving_v2, timeout=120)
    assert model.get("run_id") == second.run_id, model
    answer = http("POST", api_url(stack, "/predict"), PENGUIN)
    assert answer.status == 200 and served_version(answer.json()) == "2", answer.text
    after = containers_by_service(stack)["api"]
    assert after["Id"] == before["Id"], "the API container was replaced"
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"], "the API restarted"
    assert after["RestartCount"] == 0
    scenario.passed.add("served-v2")


def test_monitor_checks_the_served_version(stack: compose.Stack, scenario: Scenario) -> None:
    """The API logged what it answered into PostgreSQL (as monitoring_writer); feedback is
    taken; `run --rm monitor` (profile `monitoring`, as monitoring_reader) checks v2 and logs
    a run into the MLflow experiment monitoring/<model>."""
    scenario.require("served-v2")
    answered = [http("POST", api_url(stack, "/predict"), PENGUIN) for _ in range(3)]
    assert all(a.status == 200 for a in answered), [a.text for a in answered]
    request_id = answered[0].request_id
    assert request_id, "the API answered without an X-Request-ID"
    label = {"request_id": request_id, "label": 4900}
    assert http("POST", api_url(stack, "/feedback"), label).status == 202
    time.sleep(3)  # the log writes in the background, about every second
    argv = ["run", "--rm", "monitor", "ml-model", "monitor", "--once", "--min-rows", "1"]
    result = stack.run(*argv, profiles=MONITORING, check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{MODEL_NAME} v2: checked" in result.stdout, result.stdout + result.stderr
    mlflow = f"http://127.0.0.1:{stack.port('MLFLOW_HOST_PORT')}/api/2.0/mlflow"
    found = http("GET", f"{mlflow}/experiments/get-by-name?experiment_name=monitoring/{MODEL_NAME}")
    assert found.status == 200, found.text


def test_spark_cluster_scales_and_runs_non_root(stack: compose.Stack, scenario: Scenario) -> None:
    """`--profile spark`: the master and two workers (`--scale`), health-gated like the stack."""
    scenario.require("up")
    started = time.monotonic()
    result = stack.run(
        "up", "-d", "--wait", "--wait-timeout", str(SPARK_UP_TIMEOUT_S), "--no-build",
        "--scale", f"spark-worker={SPARK_WORKERS}", "spark-master", "spark-worker",
        profiles=SPARK, check=False, timeout=SPARK_UP_TIMEOUT_S + 60,
    )  # fmt: skip
    assert result.returncode == 0, f"`up` of the Spark cluster failed:\n{result.stderr}"

    def all_workers_alive() -> dict[str, Any] | None:
        state = spark_master_state(stack)
        return state if state and state["aliveworkers"] == SPARK_WORKERS else None

    master = wait_for("the master to count every worker alive", all_workers_alive, timeout=60)
    print(f"cluster healthy after {time.monotonic() - started:.0f}s: {master['aliveworkers']} "
          f"workers, {master['cores']} cores")  # fmt: skip

    spark = [
        container
        for container in stack.inspect()
        if container["Config"]["Labels"]["com.docker.compose.service"].startswith("spark-")
    ]
    assert len(spark) == 1 + SPARK_WORKERS, [c["Name"] for c in spark]
    bindings = {
        f"{container['Name']} {port}": binding["HostIp"]
        for container in spark
        for port, bound in (container["NetworkSettings"]["Ports"] or {}).items()
        for binding in bound or []
    }
    assert len(bindings) == 1 + SPARK_WORKERS, bindings  # the master's UI and each worker's
    assert set(bindings.values()) == {"127.0.0.1"}, bindings
    root = [
        f"{container['Name']}: {proc}"
        for container in spark
        for proc, uids in process_uids(container).items()
        if 0 in uids
    ]
    assert not root, f"processes running as root: {root}"
    scenario.passed.add("spark-up")


def test_spark_job_scores_the_example_table_with_the_champion(
    stack: compose.Stack, scenario: Scenario
) -> None:
    """Exactly `docker compose run --rm score-spark`: executors on the workers score the bundled
    table into the shared volume, with the same numbers as the API for the same rows."""
    scenario.require("spark-up", "served-v1")
    champion = registry_champion(stack)["version"]
    result = stack.run("run", "--rm", "score-spark", profiles=SPARK, check=False, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`run --rm score-spark` failed:\n{output[-6000:]}"

    scores = read_scores(stack, SPARK_OUTPUT)
    manifest = scores.manifest
    assert manifest["complete"] and manifest["engine"] == "spark", manifest
    assert (manifest["model"]["name"], manifest["model"]["version"]) == (MODEL_NAME, champion)
    assert (scores.rows, scores.rejects) == (manifest["rows"], manifest["rejects"]), manifest
    assert scores.rows + scores.rejects == PENGUIN_ROWS, manifest
    assert scores.rows > 0 and scores.null_predictions == 0, scores
    assert {"species", "prediction", "model_version"} <= set(scores.columns), scores.columns

    records = [
        {name: row[name] for name in PENGUIN} | {name: float(row[name]) for name in NUMERIC}
        for row in scores.sample
    ]
    answer = http("POST", api_url(stack, "/predict"), records)
    assert answer.status == 200 and served_version(answer.json()) == champion, answer.text
    for row, served in zip(scores.sample, predictions(answer.json()), strict=True):
        assert float(row["prediction"]) == pytest.approx(served, rel=1e-6), (row, served)


def test_spark_training_is_registered_and_the_api_serves_the_champion(
    stack: compose.Stack, scenario: Scenario
) -> None:
    """Exactly `docker compose run --rm train-spark`: the default config trained on the cluster
    (engine.kind=spark) is registered and judged like a local run; the API then serves
    whichever version is champion, without a restart."""
    scenario.require("spark-up", "served-v2")
    run = train(stack, service="train-spark", profiles=SPARK, timeout=1200)
    assert (run.model, run.version) == (MODEL_NAME, "3"), run.output[-3000:]
    champion = registry_champion(stack)["version"]
    assert champion == ("3" if run.promoted else "2"), run.output[-3000:]

    def serving_champion() -> dict[str, Any] | None:
        model = http("GET", api_url(stack, "/model")).json()
        return model if served_version(model) == champion else None

    wait_for("the API to serve the champion", serving_champion, timeout=120)
    answer = http("POST", api_url(stack, "/predict"), PENGUIN)
    assert answer.status == 200 and served_version(answer.json()) == champion, answer.text


def test_cpu_trainer_and_api_images_have_no_java_or_pyspark() -> None:
    probe = (
        "import importlib.util, shutil; "
        "print(importlib.util.find_spec('pyspark'), shutil.which('java'))"
    )
    for service in ("train-cpu", "api"):
        image = images.PROJECT_SERVICES[service]
        result = run([docker_cli(), "run", "--rm", "--entrypoint", "python", image, "-c", probe])
        assert result.stdout.split() == ["None", "None"], f"{image}: {result.stdout}"


def test_gpu_trainer_image(stack: compose.Stack) -> None:
    image = images.PROJECT_SERVICES["train-gpu"]
    probe = "import xgboost, ml_model; print(xgboost.build_info()['USE_CUDA'])"
    result = run([docker_cli(), "run", "--rm", "--entrypoint", "python", image, "-c", probe])
    assert result.stdout.strip() == "True", f"{image}: xgboost without CUDA: {result.stdout}"
    user = run([docker_cli(), "run", "--rm", "--entrypoint", "id", image, "-u"]).stdout.strip()
    assert user not in {"", "0"}, f"{image} runs as uid {user}"

    runtimes = json.loads(run([docker_cli(), "info", "--format", "{{json .Runtimes}}"]).stdout)
    if "nvidia" not in runtimes:
        pytest.skip(
            f"`docker compose run --rm train-gpu` not run: no NVIDIA GPU/container runtime on "
            f"this machine (engine runtimes: {', '.join(sorted(runtimes))}); the image "
            f"{image} was built and imports XGBoost's CUDA build"
        )
    result = stack.run("run", "--rm", "train-gpu", check=False, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr


def test_down_removes_containers_networks_and_volumes(stack: compose.Stack) -> None:
    stack.save_logs(LOG_DIR)
    # The scenario started the `spark` profile too; `down` leaves a profile's services alone
    # unless the profile is named, as the README tells users.
    result = stack.run("down", "-v", profiles=SPARK, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    left = compose.project_resources(stack.project)
    assert left == {"container": [], "network": [], "volume": []}, left
