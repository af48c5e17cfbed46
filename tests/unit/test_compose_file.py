"""Static checks of what `docker compose up` pulls and builds, and of the checkout it reads.

The upstream images cannot be pulled where the tests run, so the registry each one comes from is
checked here against a list verified in the images' upstream sources: an image that moved or was
withdrawn (MinIO left Docker Hub in 2025-2026) must fail this test, not a user's first `up`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# registry/repository -> where its tags were checked (a repository that still publishes them).
PUBLISHED = {
    "docker.io/library/postgres": "docker-library/postgres (official image)",
    "docker.io/dpage/pgadmin4": "pgadmin-org/pgadmin4, pkg/docker",
    "docker.io/nginxinc/nginx-unprivileged": "nginx/docker-nginx-unprivileged",
    "quay.io/minio/minio": "minio/minio Dockerfile.release; its last server release",
}
# Repositories that stopped publishing: naming one is the mistake this test exists for.
WITHDRAWN = {
    "docker.io/minio/minio": "removed from Docker Hub; use quay.io/minio/minio",
    "docker.io/minio/mc": "removed from Docker Hub; use quay.io/minio/mc",
}
# A patch release (17.11-bookworm, 1.30.4, 9.17) or MinIO's RELEASE.<timestamp>: never a moving
# tag such as latest, 17 or stable.
PINNED_TAG = re.compile(
    r"^(\d+\.\d+(\.\d+)?(-[a-z0-9]+)?|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)$"
)
OWN_IMAGES = "tabular-mlops/"


def normalise(reference: str) -> tuple[str, str]:
    """``registry/repository`` and the tag of an image reference, Docker's defaults filled in."""
    name, _, tag = (
        reference.rpartition(":")
        if ":" in reference.rsplit("/", maxsplit=1)[-1]
        else (reference, "", "")
    )
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name, tag


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(loaded["services"])


BUILT = {name: svc for name, svc in services().items() if "build" in svc}
# Services that run an image another service builds (the `spark` profile's).
SHARING = {
    name: svc
    for name, svc in services().items()
    if "build" not in svc and svc["image"] in {built["image"] for built in BUILT.values()}
}
UPSTREAM = {
    name: svc for name, svc in services().items() if "build" not in svc and name not in SHARING
}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("postgres:17.11-bookworm", ("docker.io/library/postgres", "17.11-bookworm")),
        ("minio/minio:RELEASE.x", ("docker.io/minio/minio", "RELEASE.x")),
        ("quay.io/minio/minio:v1", ("quay.io/minio/minio", "v1")),
        ("localhost:5000/app", ("localhost:5000/app", "")),
    ],
)
def test_references_are_read_like_docker_reads_them(
    reference: str, expected: tuple[str, str]
) -> None:
    assert normalise(reference) == expected


@pytest.mark.parametrize("service", sorted(UPSTREAM))
def test_upstream_images_come_from_a_registry_that_publishes_them(service: str) -> None:
    repository, tag = normalise(UPSTREAM[service]["image"])
    assert repository not in WITHDRAWN, f"{service}: {repository} {WITHDRAWN.get(repository)}"
    assert repository in PUBLISHED, (
        f"{service}: {repository} is not a repository checked to publish this image; check "
        "its upstream and add it to PUBLISHED"
    )
    assert PINNED_TAG.match(tag), f"{service}: tag {tag!r} is not a pinned release"


@pytest.mark.parametrize("service", sorted(BUILT))
def test_images_built_here_are_never_pulled(service: str) -> None:
    """Compose v2 pulls before it builds unless told not to: someone else's image of the same
    name would run instead of ours."""
    assert BUILT[service]["image"].startswith(OWN_IMAGES)
    assert BUILT[service].get("pull_policy") == "build", f"{service}: set pull_policy: build"


@pytest.mark.parametrize("service", sorted(SHARING))
def test_services_sharing_an_image_built_here_never_pull_it(service: str) -> None:
    assert SHARING[service].get("pull_policy") == "never", f"{service}: set pull_policy: never"


def test_scripts_and_templates_keep_lf_line_endings_on_any_checkout() -> None:
    """A CRLF checkout (Windows, core.autocrlf) would break the init scripts' shebang."""
    paths = [
        "postgres/initdb/10-mlflow-databases.sh",
        "nginx/templates/default.conf.template",
        "docker-compose.yml",
        "mlflow/Dockerfile",
    ]
    result = subprocess.run(
        ["git", "check-attr", "eol", "--", *paths],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == [f"{path}: eol: lf" for path in paths]


# --- the `spark` profile ----------------------------------------------------------------------

SPARK_SERVICES = ("spark-master", "spark-worker", "score-spark", "train-spark")
SPARK_LONG_RUNNING = ("spark-master", "spark-worker")
SPARK_DOCKERFILE = "ml_model/Dockerfile.spark"
# Images that must stay without Java and PySpark: Dockerfile -> what it is.
WITHOUT_SPARK = {"ml_model/Dockerfile": "CPU trainer", "fastapi/Dockerfile": "prediction API"}


def uv_sync_args(dockerfile: str) -> list[str]:
    """The ``--package``/``--extra`` arguments of the last ``uv sync`` in a Dockerfile: what the
    image installs from the lock."""
    text = (REPO_ROOT / dockerfile).read_text().replace("\\\n", " ")
    line = [line for line in text.splitlines() if "uv sync" in line][-1]
    return re.findall(r"--(?:package|extra) \S+", line)


def test_spark_services_share_one_image_under_their_own_profile() -> None:
    spark = {name: services()[name] for name in SPARK_SERVICES}
    assert {name: svc.get("profiles") for name, svc in spark.items()} == {
        name: ["spark"] for name in SPARK_SERVICES
    }
    assert {svc["image"] for svc in spark.values()} == {
        "tabular-mlops/trainer:spark-${IMAGE_TAG:-latest}"
    }
    # Built once, by the master: every service that builds a tag labels it with its own name.
    assert {name for name, svc in spark.items() if "build" in svc} == {"spark-master"}
    assert spark["spark-master"]["build"]["dockerfile"] == SPARK_DOCKERFILE
    assert set(SHARING) == {"spark-worker", "score-spark", "train-spark"}


def test_spark_data_volume_is_mounted_at_the_same_path_everywhere() -> None:
    """The driver hands executors paths: they must name the same files in every container."""
    mounts = {
        name: [v for v in services()[name].get("volumes", []) if v.startswith("spark-data:")]
        for name in SPARK_SERVICES
    }
    assert mounts == {name: ["spark-data:/data"] for name in SPARK_SERVICES}
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert "spark-data" in loaded["volumes"]


@pytest.mark.parametrize("service", SPARK_LONG_RUNNING)
def test_spark_daemons_are_health_checked_and_restarted(service: str) -> None:
    svc = services()[service]
    assert svc.get("restart") == "unless-stopped"
    test = svc["healthcheck"]["test"]
    command = svc["command"]
    assert command[0] == "spark-class", command
    ui_port = command[command.index("--webui-port") + 1]
    assert test[0] == "CMD" and f"http://127.0.0.1:{ui_port}/json/" in " ".join(test), test


def test_spark_ui_ports_are_bound_to_loopback_and_workers_scale() -> None:
    master, worker = services()["spark-master"], services()["spark-worker"]
    assert master["ports"] == ["127.0.0.1:${SPARK_MASTER_UI_HOST_PORT:-8080}:8080"]
    # `--scale spark-worker=N`: a fixed host port or a container name would clash.
    assert worker["ports"] == ["127.0.0.1::8081"]
    assert "container_name" not in worker
    # `run --rm score-spark` resets its dependencies to this scale, whatever `up --scale` did.
    assert worker["scale"] == "${SPARK_WORKERS:-1}"
    assert "ports" not in services()["score-spark"]


@pytest.mark.parametrize(
    ("service", "command"), [("score-spark", "score"), ("train-spark", "train")]
)
def test_spark_jobs_wait_for_mlflow_and_the_cluster(service: str, command: str) -> None:
    job = services()[service]
    assert "restart" not in job, "a one-shot job must not be restarted"
    assert job["depends_on"] == {
        dependency: {"condition": "service_healthy"}
        for dependency in ("mlflow", "spark-master", "spark-worker")
    }
    # Executors connect back to the driver in this container.
    assert "spark.driver.bindAddress=0.0.0.0" in job["environment"]["PYSPARK_SUBMIT_ARGS"]
    assert job["command"][:2] == ["ml-model", command], job["command"]
    assert "ports" not in job


@pytest.mark.parametrize("dockerfile", [SPARK_DOCKERFILE, *WITHOUT_SPARK])
def test_images_run_as_a_non_root_user(dockerfile: str) -> None:
    users = re.findall(r"^USER\s+(\S+)", (REPO_ROOT / dockerfile).read_text(), re.MULTILINE)
    assert users, f"{dockerfile} sets no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}, users[-1]


def test_spark_services_keep_the_images_non_root_user() -> None:
    overridden = {
        name: services()[name]["user"] for name in SPARK_SERVICES if "user" in services()[name]
    }
    assert not overridden, overridden


def test_spark_image_installs_java_and_the_spark_extra() -> None:
    text = (REPO_ROOT / SPARK_DOCKERFILE).read_text()
    assert "openjdk-17-jre-headless" in text
    assert "--extra spark" in uv_sync_args(SPARK_DOCKERFILE)


@pytest.mark.parametrize("dockerfile", sorted(WITHOUT_SPARK))
def test_cpu_trainer_and_api_images_stay_without_java_and_pyspark(dockerfile: str) -> None:
    """What the image's `uv sync` installs, resolved by uv from the lock, has no PySpark."""
    text = (REPO_ROOT / dockerfile).read_text().lower()
    assert not re.search(r"openjdk|\bjre\b|\bjava\b", text), f"{dockerfile} installs Java"
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-header",
         *" ".join(uv_sync_args(dockerfile)).split()],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    packages = {
        re.split(r"[=<>; \[]", line, maxsplit=1)[0].lower() for line in exported.splitlines()
    }
    assert "scikit-learn" in packages, exported  # the export listed the image's packages
    assert not packages & {"pyspark", "py4j"}, f"{WITHOUT_SPARK[dockerfile]} installs PySpark"


def test_prediction_log_roles_are_split_between_api_and_monitor() -> None:
    """The API writes the prediction log as the insert-only role and the monitor reads it as
    the reader; both reach PostgreSQL on the internal database network, the passwords come
    from required secrets, and the monitor runs only under its profile, health-checked."""
    compose = services()
    api, monitor, postgres = compose["api"], compose["monitor"], compose["postgres"]
    assert "monitoring_writer@postgres" in api["environment"]["MONITORING_DB_URL"]
    assert "monitoring_reader@postgres" in monitor["environment"]["MONITORING_DB_URL"]
    assert api["environment"]["MONITORING_DB_PASSWORD"].startswith("${MONITORING_WRITER_PASSWORD:?")
    assert monitor["environment"]["MONITORING_DB_PASSWORD"].startswith(
        "${MONITORING_READER_PASSWORD:?"
    )
    for role in ("WRITER", "READER"):
        assert postgres["environment"][f"MONITORING_{role}_PASSWORD"].startswith(
            f"${{MONITORING_{role}_PASSWORD:?"
        )
    assert "database" in api["networks"] and "database" in monitor["networks"]
    assert monitor["profiles"] == ["monitoring"]
    assert "--heartbeat" in monitor["command"] and "healthcheck" in monitor
    assert monitor["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_score_spark_scores_with_the_champion_and_train_spark_trains_on_the_cluster() -> None:
    assert "models:/penguins-body-mass@champion" in services()["score-spark"]["command"]
    train = services()["train-spark"]["command"]
    assert "engine.kind=spark" in train
    assert "engine.spark.master=${SPARK_MASTER_URL:-spark://spark-master:7077}" in train
    assert "training.cv_folds=null" in train  # cross-validation is refused with Spark
