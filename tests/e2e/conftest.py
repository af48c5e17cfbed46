"""Fixtures of the e2e suite. `python -m tools.e2e run` (make e2e) starts the engine,
builds the images, writes the stack's env file and runs this suite; `pytest tests/e2e` alone
works too once `python -m tools.e2e images` has built the images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import Scenario
from tools.e2e import compose, engine, images
from tools.e2e.proc import LOG_DIR

# Set by the harness: a missing engine or image is then a failure, not a reason to skip.
UNDER_HARNESS = os.environ.get("MLOPS_E2E_HARNESS") == "1"


def _cannot_run(why: str) -> None:
    if UNDER_HARNESS:
        pytest.fail(why)
    pytest.skip(f"{why}; `python -m tools.e2e run` prepares everything")


@pytest.fixture(scope="session")
def stack() -> Iterator[compose.Stack]:
    """The compose project (real docker-compose.yml + the e2e override, generated .env).
    Whatever happens, its logs are saved and its containers, networks and volumes removed."""
    if not engine.answers():
        _cannot_run("no Docker engine answers")
    needed = [*images.TAGS.values(), *images.PROJECT_SERVICES.values()]
    missing = [tag for tag in needed if not images.image_exists(tag)]
    if missing:
        _cannot_run(f"images missing: {', '.join(missing)}")
    env_file = os.environ.get("MLOPS_E2E_ENV_FILE")
    the_stack = compose.Stack(Path(env_file) if env_file else compose.new_stack_env())
    try:
        yield the_stack
    finally:
        if the_stack.container_ids():
            the_stack.save_logs(LOG_DIR)
        the_stack.down()
        compose.remove_project(compose.NO_SECRET_PROJECT)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return Scenario()
