"""The Docker engine for the e2e tests: install it when missing, start dockerd when none answers,
and stop it again only when this harness started it.

State lives in STATE_DIR (default /run/mlops-e2e): ``dockerd.pid`` holds "<pid> <start time>" of
a dockerd the harness started, ``dockerd.log`` its output. The storage driver is the first of
overlay2, fuse-overlayfs, vfs that starts (override: MLOPS_E2E_STORAGE_DRIVER).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
from pathlib import Path

from tools import prereqs
from tools.processes import poll, wait_until

from .proc import STATE_DIR, HarnessError, log, require_root, run, tail

STORAGE_DRIVERS = ("overlay2", "fuse-overlayfs", "vfs")
PID_FILE = STATE_DIR / "dockerd.pid"
DOCKERD_LOG = STATE_DIR / "dockerd.log"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def ensure_packages() -> None:
    """Install the engine, debootstrap, iptables and Compose v2 when missing (tools.prereqs)."""
    still_missing = prereqs.ensure(["e2e"]).get("e2e")
    if still_missing:
        raise HarnessError(f"missing: {prereqs.install_hint(still_missing)}")
    docker_cli.cache_clear()


def _client_major(cli: str) -> int:
    output = run([cli, "--version"], check=False).stdout
    match = re.search(r"version (\d+)\.", output)
    return int(match.group(1)) if match else 0


@functools.cache
def docker_cli() -> str:
    """A docker client that builds with BuildKit: one with the buildx plugin, else Debian's
    docker.io client (before 23.0 the client has BuildKit built in). MLOPS_E2E_DOCKER overrides.
    """
    override = os.environ.get("MLOPS_E2E_DOCKER")
    if override:
        return override
    candidates = [c for c in (prereqs.find("docker"), "/usr/bin/docker") if c and Path(c).exists()]
    for cli in candidates:
        if run([cli, "buildx", "version"], check=False).returncode == 0:
            return cli
    for cli in candidates:
        if 0 < _client_major(cli) < 23:
            return cli
    if candidates:
        return candidates[0]
    raise HarnessError("no docker client found; run `python -m tools.e2e engine up`")


def client_env() -> dict[str, str]:
    """Environment for docker builds: BuildKit on (a docker.io client before 23.0 needs asking)."""
    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def answers() -> bool:
    """True when an engine answers on the default socket."""
    cli = prereqs.find("docker") or "/usr/bin/docker"
    if not Path(cli).exists():
        return False
    try:
        result = subprocess.run(
            [cli, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def info() -> dict[str, str]:
    """Server version, storage driver and cgroup details of the running engine."""
    fmt = "{{.ServerVersion}}|{{.Driver}}|{{.CgroupVersion}}|{{.DockerRootDir}}"
    fields = run([docker_cli(), "info", "--format", fmt]).stdout.strip().split("|")
    keys = ("server_version", "storage_driver", "cgroup_version", "root_dir")
    return dict(zip(keys, fields, strict=False))


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (stable identity against pid reuse), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _is_dockerd(pid: int) -> bool:
    """True while ``pid`` is a live dockerd (one that exited counts as gone even while it waits,
    as a zombie, for its parent, e.g. this process when `run` started it, to reap it)."""
    try:
        _reap(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == "dockerd" and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is a child of this process that has exited."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _recorded_pid() -> int | None:
    """The dockerd this harness started, if it still runs (a stale pid file is removed)."""
    try:
        pid_text, started = PID_FILE.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _is_dockerd(pid) and _start_time(pid) == started:
        return pid
    PID_FILE.unlink(missing_ok=True)
    return None


def _running_dockerd() -> list[int]:
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if _is_dockerd(pid)]


def _wait_until_answering(proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """True once the engine answers; False when ``proc`` exits first or ``timeout`` passes."""

    def outcome() -> bool | None:
        if answers():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        return None  # not yet

    try:
        return poll(outcome, "the Docker engine to answer", timeout, interval=0.5)
    except TimeoutError:
        return False


def _remove_stale_pidfile() -> None:
    docker_pid = Path("/var/run/docker.pid")
    try:
        pid = int(docker_pid.read_text().strip())
    except (OSError, ValueError):
        return
    if not _is_dockerd(pid):
        docker_pid.unlink(missing_ok=True)


def _driver_candidates() -> list[str]:
    forced = os.environ.get("MLOPS_E2E_STORAGE_DRIVER")
    return [forced] if forced else list(STORAGE_DRIVERS)


def _start_dockerd(driver: str) -> subprocess.Popen[bytes] | None:
    """Start dockerd with one storage driver; None when that driver cannot be tried here."""
    if driver == "fuse-overlayfs":
        if not Path("/dev/fuse").exists():
            log("fuse-overlayfs: /dev/fuse is missing, skipping")
            return None
        if prereqs.find("fuse-overlayfs") is None:
            prereqs.apt_install(["fuse-overlayfs"])
    _remove_stale_pidfile()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with DOCKERD_LOG.open("ab") as out:
        out.write(f"--- starting dockerd --storage-driver={driver}\n".encode())
        out.flush()
        return subprocess.Popen(
            [
                prereqs.find("dockerd") or "dockerd",
                f"--storage-driver={driver}",
                "--log-level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PATH": prereqs.SBIN_PATH},
        )


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not _is_dockerd(pid), f"dockerd {pid} to stop", timeout, interval=0.5)
    except TimeoutError:
        log(f"dockerd {pid} ignored SIGTERM for {timeout:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)


def up() -> dict[str, str]:
    """Make sure an engine answers; start one (and record that) only if none does."""
    ensure_packages()
    if answers():
        state = info()
        started = "yes" if _recorded_pid() else "no"
        log(
            f"engine answers ({state['server_version']}, {state['storage_driver']}); "
            f"started by the harness: {started}"
        )
        return {**state, "started_by_harness": started, "started_now": "no", "client": docker_cli()}
    if _running_dockerd():
        log("dockerd runs but does not answer yet; waiting")
        if _wait_until_answering(None, START_TIMEOUT_S):
            return up()
        raise HarnessError(
            f"dockerd (pid {_running_dockerd()}) runs but does not answer on "
            "/var/run/docker.sock; stop it or check its log"
        )
    require_root("starting dockerd")
    failures = []
    for driver in _driver_candidates():
        log(f"starting dockerd with storage driver {driver}")
        proc = _start_dockerd(driver)
        if proc is None:
            continue
        if _wait_until_answering(proc, START_TIMEOUT_S):
            PID_FILE.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
            state = info()
            if driver == "vfs":
                log("WARNING: storage driver vfs copies every layer in full: slow, disk-hungry")
            log(f"dockerd {proc.pid} answers: {state['server_version']}, {state['storage_driver']}")
            return {
                **state,
                "started_by_harness": "yes",
                "started_now": "yes",
                "client": docker_cli(),
            }
        if proc.poll() is None:
            _stop_pid(proc.pid, STOP_TIMEOUT_S)
        failures.append(f"{driver}: exit {proc.poll()}")
    raise HarnessError(
        f"dockerd did not start with any storage driver ({'; '.join(failures)}); "
        f"log {DOCKERD_LOG}:\n{tail(DOCKERD_LOG.read_text(errors='replace'))}"
    )


def down() -> bool:
    """Stop dockerd if this harness started it; True when it stopped one."""
    pid = _recorded_pid()
    if pid is None:
        log("no dockerd started by the harness runs; leaving the engine alone")
        return False
    log(f"stopping dockerd {pid} (started by the harness)")
    _stop_pid(pid, STOP_TIMEOUT_S)
    PID_FILE.unlink(missing_ok=True)
    return True


def status() -> dict[str, str]:
    """What runs now, without changing anything."""
    pid = _recorded_pid()
    state: dict[str, str] = {
        "answers": "yes" if answers() else "no",
        "started_by_harness": f"yes (pid {pid})" if pid else "no",
    }
    if state["answers"] == "yes":
        state.update(info())
        state["client"] = docker_cli()
    return state
