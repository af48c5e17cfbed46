"""The compose project under test: the real docker-compose.yml plus the e2e override, a
generated env file, and the commands the harness and the tests run against it.

Every command runs with a scrubbed environment: variables that docker-compose.yml interpolates
are removed from the process environment, so the env file alone decides (a POSTGRES_PASSWORD
exported in the caller's shell cannot hide a missing secret).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.processes import free_ports

from .engine import client_env, docker_cli
from .proc import E2E_DIR, LOG_DIR, REPO_ROOT, HarnessError, log, run, tail

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
OVERRIDE_FILE = E2E_DIR / "docker-compose.e2e.yml"
PROJECT = "mlops-e2e"
# The `up` that must fail runs under its own name, so "no container started" is checkable.
NO_SECRET_PROJECT = f"{PROJECT}-nosecret"
PROJECTS = (PROJECT, NO_SECRET_PROJECT)
IMAGE_TAG = "e2e"
PROFILES = ("train", "train-gpu", "spark", "monitoring")
ENV_FILE = Path(os.environ.get("MLOPS_E2E_ENV_FILE", REPO_ROOT / ".mlops" / "e2e" / "stack.env"))
PROJECT_LABEL = "com.docker.compose.project"
# Host ports of the stack; each gets a free port at generation time.
PORT_VARIABLES = (
    "MLFLOW_HOST_PORT",
    "API_HOST_PORT",
    "PGADMIN_HOST_PORT",
    "MINIO_API_HOST_PORT",
    "MINIO_CONSOLE_HOST_PORT",
    "SPARK_MASTER_UI_HOST_PORT",
)
# Settings of the test stack that differ from .env.example's defaults, and why.
TEST_SETTINGS = {
    "IMAGE_TAG": IMAGE_TAG,  # never overwrite a user's tabular-mlops/*:latest images
    "API_POLL_INTERVAL_SECONDS": "2",  # the new champion shows within seconds
}
# Values for secrets that must look a certain way.
SECRET_SHAPES = {
    "PGADMIN_DEFAULT_EMAIL": lambda: f"e2e-{secrets.token_hex(4)}@example.com",
    "MINIO_ROOT_USER": lambda: f"e2e-{secrets.token_hex(4)}",
}

_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@dataclass(frozen=True)
class Reference:
    """One ``${VAR...}`` in the compose file; ``required`` for ``${VAR:?message}``."""

    name: str
    required: bool
    message: str


def references(text: str | None = None) -> list[Reference]:
    """Every variable docker-compose.yml interpolates, in order of first use."""
    source = COMPOSE_FILE.read_text() if text is None else text
    seen: dict[str, Reference] = {}
    for match in _REFERENCE.finditer(source):
        name, operator, message = match.group(1), match.group(2) or "", match.group(3) or ""
        ref = Reference(name, "?" in operator, message)
        if name not in seen or (ref.required and not seen[name].required):
            seen[name] = ref
    return list(seen.values())


def required_secrets() -> list[str]:
    return [ref.name for ref in references() if ref.required]


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped, no quoting rules)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def generated_secrets(names: Iterable[str]) -> dict[str, str]:
    return {name: SECRET_SHAPES.get(name, lambda: secrets.token_urlsafe(24))() for name in names}


def env_text(values: Mapping[str, str], drop: Iterable[str] = ()) -> str:
    """.env.example with ``values`` filled in (uncommenting ``# KEY=`` lines it sets, appending
    keys it does not know) and the ``drop`` keys removed entirely."""
    dropped = set(drop)
    pending = dict(values)
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", line)
        if match and match.group(1) in dropped:
            continue
        if match and match.group(1) in pending:
            lines.append(f"{match.group(1)}={pending.pop(match.group(1))}")
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in pending.items() if key not in dropped]
    return "\n".join(lines) + "\n"


def write_env(path: Path, values: Mapping[str, str], drop: Iterable[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(env_text(values, drop))
    return path


def new_stack_env(path: Path = ENV_FILE) -> Path:
    """A fresh env file for the test stack: generated secrets, free ports, TEST_SETTINGS."""
    values = generated_secrets(required_secrets())
    values.update(zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True))
    values.update(TEST_SETTINGS)
    return write_env(path, values)


def compose_env() -> dict[str, str]:
    """client_env() without any variable the compose file interpolates or compose reads."""
    names = {ref.name for ref in references()}
    return {
        key: value
        for key, value in client_env().items()
        if key not in names
        and not key.startswith("COMPOSE_PROJECT")
        and key not in {"COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PATH_SEPARATOR"}
    }


@dataclass(frozen=True)
class Stack:
    """``docker compose -p PROJECT --env-file ENV -f docker-compose.yml -f <override>``: Compose
    v2, the CLI plugin users run, installed by ``tools.prereqs``."""

    env_file: Path = ENV_FILE
    project: str = PROJECT
    override: bool = True

    def argv(self, *args: str, profiles: Sequence[str] = ()) -> list[str]:
        files = [COMPOSE_FILE, OVERRIDE_FILE] if self.override else [COMPOSE_FILE]
        argv = [docker_cli(), "compose", "--ansi", "never", "-p", self.project]
        argv += ["--env-file", str(self.env_file)]
        for file in files:
            argv += ["-f", str(file)]
        for profile in profiles:
            argv += ["--profile", profile]
        return [*argv, *args]

    def run(
        self,
        *args: str,
        profiles: Sequence[str] = (),
        check: bool = True,
        timeout: float | None = 600,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            self.argv(*args, profiles=profiles),
            env={**compose_env(), **(env or {})},
            cwd=REPO_ROOT,
            check=check,
            timeout=timeout,
        )

    @property
    def settings(self) -> dict[str, str]:
        return parse_env(self.env_file.read_text())

    def port(self, variable: str) -> int:
        return int(self.settings[variable])

    def container_ids(self, all_states: bool = True) -> list[str]:
        return project_containers(self.project, all_states)

    def inspect(self) -> list[dict[str, Any]]:
        """`docker inspect` of every container of the project (one-off ones included)."""
        ids = self.container_ids()
        if not ids:
            return []
        return list(json.loads(run([docker_cli(), "inspect", *ids]).stdout))

    def save_logs(self, directory: Path = LOG_DIR) -> list[Path]:
        """Each container's state and its logs into ``directory``; the paths written."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        states = {}
        for container in self.inspect():
            labels = container["Config"]["Labels"]
            service = labels.get("com.docker.compose.service", container["Name"].lstrip("/"))
            if labels.get("com.docker.compose.oneoff") == "True":
                service = f"{service}-run-{container['Id'][:8]}"
            state = container["State"]
            states[service] = {
                "status": state["Status"],
                "exit_code": state["ExitCode"],
                "health": (state.get("Health") or {}).get("Status", ""),
                "restarts": container["RestartCount"],
            }
            logs = run([docker_cli(), "logs", "--timestamps", container["Id"]], check=False)
            path = directory / f"{self.project}-{service}.log"
            path.write_text(logs.stdout + logs.stderr)
            written.append(path)
        state_path = directory / f"{self.project}-services.json"
        state_path.write_text(json.dumps(states, indent=2))
        return [state_path, *written]

    def down(self) -> None:
        """Remove the project's containers, networks and volumes, whatever state they are in:
        `down -v --remove-orphans` when the env file still interpolates, then by label."""
        if self.env_file.exists():
            result = self.run(
                "down",
                "-v",
                "--remove-orphans",
                "--timeout",
                "10",
                profiles=PROFILES,
                check=False,
                timeout=300,
            )
            if result.returncode != 0:
                log(f"`down` of {self.project} failed; removing by label:\n{tail(result.stderr)}")
        remove_project(self.project)


def _by_label(kind: str, project: str, all_states: bool = True) -> list[str]:
    argv = [docker_cli(), kind, "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}"]
    if kind == "container" and all_states:
        argv.insert(3, "-a")
    return run(argv).stdout.split()


def project_containers(project: str, all_states: bool = True) -> list[str]:
    return _by_label("container", project, all_states)


def project_resources(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes labelled as belonging to the compose project."""
    return {kind: _by_label(kind, project) for kind in ("container", "network", "volume")}


def remove_project(project: str) -> None:
    """Force-remove every container, network and volume labelled with the project."""
    left = project_resources(project)
    if left["container"]:
        run([docker_cli(), "rm", "-f", "-v", *left["container"]], check=False)
    if left["network"]:
        run([docker_cli(), "network", "rm", *left["network"]], check=False)
    if left["volume"]:
        run([docker_cli(), "volume", "rm", "-f", *left["volume"]], check=False)
    still = {kind: ids for kind, ids in project_resources(project).items() if ids}
    if still:
        raise HarnessError(f"could not remove everything of project {project}: {still}")
