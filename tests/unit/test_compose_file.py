"""Static checks of what `docker compose up` pulls and builds, and of the checkout it reads.

The upstream images cannot be pulled where the tests run, so the registry each one comes from is
checked here against a list verified in the images' upstream sources: an image that moved or was
withdrawn (MinIO left Docker Hub in 2025-2026) must fail this test, not a user's first `up`.
"""

from __future__ import annotations

import re
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


UPSTREAM = {name: svc for name, svc in services().items() if "build" not in svc}
BUILT = {name: svc for name, svc in services().items() if "build" in svc}


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
