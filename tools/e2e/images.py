"""Images for the e2e tests, all local: a debootstrap Debian base, stand-ins for the third-party
images the stack uses, and the project's own images, built by `docker compose build` from the
real docker-compose.yml with the e2e override giving their base-image build args.

Only the rootfs import is skipped when its image exists; everything else goes through
`docker build`, which the engine's layer cache turns into a quick no-op when nothing changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import compose
from .engine import client_env, docker_cli
from .proc import E2E_DIR, HarnessError, log, require_root, run, run_logged, tail

NAMESPACE = "mlops-e2e"
SUITE = "bookworm"
ROOTFS_IMAGE = f"{NAMESPACE}/debian-rootfs:{SUITE}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
IMAGES_DIR = E2E_DIR / "images"
ROOTFS_TMP_PREFIX = "mlops-e2e-rootfs-"


@dataclass(frozen=True)
class Image:
    """One image to build: a Dockerfile and its context, a tag, build args."""

    name: str
    tag: str
    dockerfile: Path
    context: Path
    build_args: Mapping[str, str]


def _stand_in(name: str, tag: str) -> Image:
    return Image(name, tag, IMAGES_DIR / name / "Dockerfile", IMAGES_DIR / name, {})


# Build order matters: each image builds FROM one listed before it.
STAND_INS = (
    _stand_in("debian", f"{NAMESPACE}/debian:{SUITE}"),
    _stand_in("python", f"{NAMESPACE}/python:3.11-slim"),
    _stand_in("uv", f"{NAMESPACE}/uv:0.13.9"),
    _stand_in("postgres", f"{NAMESPACE}/postgres:17"),
    _stand_in("nginx", f"{NAMESPACE}/nginx-unprivileged:1.30"),
    _stand_in("minio", f"{NAMESPACE}/minio:local"),
    _stand_in("pgadmin", f"{NAMESPACE}/pgadmin:9"),
)
TAGS = {image.name: image.tag for image in STAND_INS}

# Compose services built from the repository's Dockerfiles, and the images they produce.
PROJECT_SERVICES = {
    "mlflow": f"tabular-mlops/mlflow-server:{compose.IMAGE_TAG}",
    "api": f"tabular-mlops/prediction-api:{compose.IMAGE_TAG}",
    "train-cpu": f"tabular-mlops/trainer:cpu-{compose.IMAGE_TAG}",
    "monitor": f"tabular-mlops/monitor:{compose.IMAGE_TAG}",
    "train-gpu": f"tabular-mlops/trainer:gpu-{compose.IMAGE_TAG}",
    # Built by spark-master; spark-worker and score-spark run the same image.
    "spark-master": f"tabular-mlops/trainer:spark-{compose.IMAGE_TAG}",
}
GPU_SERVICES = ("train-gpu",)


def image_exists(tag: str) -> bool:
    return run([docker_cli(), "image", "inspect", tag], check=False).returncode == 0


def image_id(tag: str) -> str | None:
    result = run([docker_cli(), "image", "inspect", "-f", "{{.Id}}", tag], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def drop_replaced(tag: str, previous: str | None) -> None:
    """Remove the image a rebuild moved ``tag`` away from, so warm runs do not pile up
    untagged gigabytes (a no-op when it is still tagged or used)."""
    if previous and previous != image_id(tag):
        run([docker_cli(), "image", "rm", previous], check=False)


# --- the Debian base --------------------------------------------------------------------------


def debian_mirrors() -> tuple[str, str]:
    """The host's Debian mirror and security mirror (deb822 or one-line apt sources), or
    deb.debian.org when the host does not use one for this suite."""
    mirror, security = DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR
    entries: list[tuple[list[str], list[str]]] = []
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, _, value in (line.partition(":") for line in stanza.splitlines())
                if key.strip() and not key.startswith(("#", " "))
            )
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if match:
                    entries.append(([match.group(1)], [match.group(2)]))
    for uris, suites in reversed(entries):
        http_uris = [u.rstrip("/") for u in uris if u.startswith(("http://", "https://"))]
        if http_uris and SUITE in suites:
            mirror = http_uris[0]
        if http_uris and f"{SUITE}-security" in suites:
            security = http_uris[0]
    return mirror, security


def _unmount_under(path: Path) -> None:
    """Unmount whatever debootstrap left mounted below ``path`` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for mount_point in sorted(mounts, key=len, reverse=True):
        run(["umount", "-l", mount_point], check=False)


def _remove_stale_rootfs_dirs() -> None:
    for stale in Path("/var/tmp").glob(f"{ROOTFS_TMP_PREFIX}*"):
        _unmount_under(stale)
        run(["rm", "-rf", "--one-file-system", str(stale)], check=False)


def _trim_rootfs(rootfs: Path, mirror: str, security: str) -> None:
    """Point apt at the host's mirrors and drop caches, logs and docs before the import."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/log/*.log",
        "var/log/apt/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "usr/share/doc/*/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name not in {"lock", "copyright"}:
                path.unlink()


def ensure_rootfs() -> float:
    """Build the rootfs image with debootstrap + docker import unless it exists; seconds spent."""
    if image_exists(ROOTFS_IMAGE):
        return 0.0
    require_root("debootstrap")
    started = time.monotonic()
    _remove_stale_rootfs_dirs()
    mirror, security = debian_mirrors()
    log(f"debootstrap --variant=minbase {SUITE} from {mirror}")
    with tempfile.TemporaryDirectory(prefix=ROOTFS_TMP_PREFIX, dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            run_logged(
                ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                "debootstrap.log",
                timeout=1800,
            )
            _trim_rootfs(rootfs, mirror, security)
            log(f"docker import -> {ROOTFS_IMAGE}")
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", "-", "."],
                stdout=subprocess.PIPE,
            )
            imported = subprocess.run(
                [docker_cli(), "import", "--change", 'CMD ["bash"]', "-", ROOTFS_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
            )
            if tar.stdout is not None:
                tar.stdout.close()
            if tar.wait() != 0 or imported.returncode != 0:
                raise HarnessError(f"docker import of the rootfs failed:\n{tail(imported.stderr)}")
        finally:
            _unmount_under(rootfs)
    return time.monotonic() - started


def _debian_context(tmp: Path) -> Path:
    """The debian stand-in's context plus the host's extra CA certificates under extra-ca/."""
    context = tmp / "debian"
    shutil.copytree(IMAGES_DIR / "debian", context)
    extra = context / "extra-ca"
    extra.mkdir()
    if HOST_CA_DIR.is_dir():
        for cert in sorted(HOST_CA_DIR.rglob("*.crt")):
            shutil.copy(cert, extra / cert.name)
    return context


# --- building ---------------------------------------------------------------------------------


def build(image: Image, context: Path | None = None) -> float:
    """`docker build` one image with BuildKit; seconds spent."""
    started = time.monotonic()
    argv = [docker_cli(), "build", "--progress=plain", "-t", image.tag, "-f", str(image.dockerfile)]
    for key, value in image.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context or image.context))
    previous = image_id(image.tag)
    try:
        run_logged(argv, f"build-{image.name}.log", env=client_env(), timeout=3600)
    except HarnessError as error:
        hint = ""
        if image.name == "debian":
            hint = (
                "\nhint: the first build runs apt-get in a container; check that containers "
                "reach the Debian mirror (bridge networking, iptables, DNS)."
            )
        raise HarnessError(f"building {image.tag} failed: {error}{hint}") from error
    drop_replaced(image.tag, previous)
    elapsed = time.monotonic() - started
    log(f"built {image.tag} in {elapsed:.1f}s")
    return elapsed


def ensure_stand_ins(names: Iterable[str] | None = None) -> dict[str, float]:
    """The rootfs and the stand-in images (all, or those named plus what they build on)."""
    wanted = set(names) if names is not None else set(TAGS)
    unknown = wanted - set(TAGS)
    if unknown:
        raise HarnessError(f"unknown stand-in image(s): {', '.join(sorted(unknown))}")
    timings = {"rootfs": ensure_rootfs()}
    with tempfile.TemporaryDirectory(prefix="mlops-e2e-ctx-") as tmp:
        for image in STAND_INS:
            if image.name in wanted or image.name in {"debian", "python"}:
                context = _debian_context(Path(tmp)) if image.name == "debian" else None
                timings[image.name] = build(image, context)
    return timings


def build_service(stack: compose.Stack, service: str) -> float:
    """`docker compose build SERVICE` (Compose v2, BuildKit); seconds spent."""
    started = time.monotonic()
    env = {**compose.compose_env(), "BUILDKIT_PROGRESS": "plain"}
    argv = stack.argv("build", service, profiles=compose.PROFILES)
    previous = image_id(PROJECT_SERVICES[service])
    try:
        run_logged(
            argv, f"build-{service}.log", env=env, cwd=compose.COMPOSE_FILE.parent, timeout=3600
        )
    except HarnessError as error:
        raise HarnessError(f"building service {service} failed: {error}") from error
    drop_replaced(PROJECT_SERVICES[service], previous)
    elapsed = time.monotonic() - started
    log(f"built {PROJECT_SERVICES[service]} (service {service}) in {elapsed:.1f}s")
    return elapsed


def ensure_project_images(stack: compose.Stack, gpu: bool = True) -> dict[str, float]:
    """The images docker-compose.yml builds, on the stand-in bases (which must exist)."""
    return {
        service: build_service(stack, service)
        for service in PROJECT_SERVICES
        if gpu or service not in GPU_SERVICES
    }


def ensure_all(
    project: bool = True, gpu: bool = True, stack: compose.Stack | None = None
) -> dict[str, float]:
    timings = ensure_stand_ins()
    if project:
        if stack is None:
            stack = compose.Stack(compose.new_stack_env())
        timings.update(ensure_project_images(stack, gpu=gpu))
    return timings


def remove_all() -> None:
    """Remove the harness's images (its namespace and the project images tagged for the tests)
    and the build cache, for cold measurements. Other images stay."""
    listed = run([docker_cli(), "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout
    tags = [
        tag
        for tag in listed.split()
        if tag.startswith(f"{NAMESPACE}/") or tag in PROJECT_SERVICES.values()
    ]
    if tags:
        log(f"removing {len(tags)} image(s): {' '.join(tags)}")
        run([docker_cli(), "image", "rm", "-f", *tags])
    run([docker_cli(), "builder", "prune", "-af"], env=client_env())
