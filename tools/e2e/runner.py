"""`make e2e`: engine up -> images -> the pytest suite under tests/e2e -> clean-up, always.

Exit status: pytest's, or 1 when a step before it failed. When the machine cannot run the suite
(not root, no way to install or start Docker) it prints "e2e skipped: <why>" and exits 0, unless
CI=true, which turns that into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tools import prereqs

from . import compose, engine, images
from .proc import LOG_DIR, REPO_ROOT, HarnessError, log, tail

T = TypeVar("T")
PYTEST_TIMEOUT_S = 45 * 60
TEST_TIMEOUT_S = 15 * 60
LOG_TAIL_FAILING = 80
LOG_TAIL_OTHER = 15


def skip_reason() -> str | None:
    """Why this machine cannot run the suite, or None."""
    if os.geteuid() != 0:
        return "not root: installing and starting Docker and debootstrap need root"
    missing = prereqs.missing_for("e2e")
    if missing and not prereqs.can_install():
        return f"missing {prereqs.install_hint(missing)}"
    return None


class Timings:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log(f"== {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.monotonic() - started
            log(f"== {name}: {self.steps[name]:.1f}s")

    def report(self, details: dict[str, float]) -> None:
        lines = ["step timings:"]
        lines += [f"  {name:24s} {seconds:8.1f}s" for name, seconds in self.steps.items()]
        lines.append(f"  {'total':24s} {sum(self.steps.values()):8.1f}s")
        if details:
            lines.append("image builds:")
            lines += [f"  {name:24s} {seconds:8.1f}s" for name, seconds in details.items()]
        print("\n".join(lines), flush=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def clean_projects() -> None:
    """Remove the containers, networks and volumes of every project the suite uses."""
    if not engine.answers():
        return
    for project in compose.PROJECTS:
        env_file = compose.ENV_FILE if project == compose.PROJECT else Path("/nonexistent")
        compose.Stack(env_file, project).down()


def run_pytest(stack: compose.Stack, pytest_args: list[str]) -> int:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "pytest", "tests/e2e",
        "-v", "-p", "no:cacheprovider",
        f"--timeout={TEST_TIMEOUT_S}",
        f"--junitxml={LOG_DIR / 'junit.xml'}", "-o", "junit_logging=system-out",
        "--durations=0", "--durations-min=1",
        *pytest_args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLOPS_E2E_ENV_FILE": str(stack.env_file),
        "MLOPS_E2E_HARNESS": "1",
        "MLOPS_E2E_LOG_DIR": str(LOG_DIR),
    }
    log(f"$ {' '.join(argv[1:])}")
    try:
        result = subprocess.run(argv, env=env, cwd=REPO_ROOT, timeout=PYTEST_TIMEOUT_S, check=False)
        return result.returncode
    except subprocess.TimeoutExpired:
        log(f"pytest did not finish within {PYTEST_TIMEOUT_S}s")
        return 1


def report_failure(stack: compose.Stack | None) -> None:
    """Tails of the logs that matter: failing services at length, the others briefly, and the
    engine's log when the harness started it."""
    if stack is not None and engine.answers() and stack.container_ids():
        try:
            stack.save_logs()  # the stack is still up: pytest did not get to its teardown
        except HarnessError as error:
            log(f"could not save the stack's logs: {error}")
    states_path = LOG_DIR / f"{compose.PROJECT}-services.json"
    if states_path.exists():
        states = json.loads(states_path.read_text())
        print(f"--- services of {compose.PROJECT} at teardown ({states_path})")
        for service, state in states.items():
            print(f"  {service:28s} {json.dumps(state)}")
        for service, state in states.items():
            failing = (
                state["health"] not in {"", "healthy"}
                or state["restarts"]
                or (state["status"] != "running" and state["exit_code"] != 0)
            )
            path = LOG_DIR / f"{compose.PROJECT}-{service}.log"
            if path.exists():
                lines = LOG_TAIL_FAILING if failing else LOG_TAIL_OTHER
                mark = "FAILING " if failing else ""
                print(f"--- {mark}{service}: last {lines} lines of {path}")
                print(tail(path.read_text(errors="replace"), lines))
    dockerd_log = engine.DOCKERD_LOG
    if dockerd_log.exists():
        print(f"--- dockerd: last 20 lines of {dockerd_log}")
        print(tail(dockerd_log.read_text(errors="replace"), 20))
    print(f"--- all logs: {LOG_DIR}", flush=True)


def main(pytest_args: list[str]) -> int:
    required = prereqs.in_ci()

    def cannot_run(why: str) -> int:
        if required:
            log(f"e2e FAILED: it cannot run here and CI is set: {why}")
            return 1
        print(f"e2e skipped: {why}", flush=True)
        return 0

    reason = skip_reason()
    if reason:
        return cannot_run(reason)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    timings = Timings()
    builds: dict[str, float] = {}
    stack: compose.Stack | None = None
    try:
        with timings.step("engine up"):
            started_engine = engine.up().get("started_now") == "yes"
    except HarnessError as error:
        return cannot_run(f"the Docker engine could not be installed or started: {error}")
    status = 1
    try:
        with timings.step("clean leftovers"):
            clean_projects()
        stack = compose.Stack(compose.new_stack_env())
        with timings.step("stand-in images"):
            builds.update(images.ensure_stand_ins())
        with timings.step("project images"):
            builds.update(images.ensure_project_images(stack))
        with timings.step("pytest tests/e2e"):
            status = run_pytest(stack, pytest_args)
    except HarnessError as error:
        log(f"e2e FAILED: {error}")
        status = 1
    except KeyboardInterrupt as interrupt:
        log(f"e2e interrupted ({interrupt}); cleaning up")
        status = 130
    finally:
        if status != 0:
            _guard(lambda: report_failure(stack))
        with timings.step("clean-up"):
            if not _guard(clean_projects):
                status = status or 1
        if started_engine:  # an engine that answered before this run keeps running
            with timings.step("engine down"):
                _guard(engine.down)
        timings.report(builds)
        log(f"e2e {'passed' if status == 0 else f'FAILED (exit {status})'}")
    return status


def _guard(action: Callable[[], T]) -> bool:
    """Run a clean-up action; log instead of raising so the next one still runs."""
    try:
        action()
        return True
    except (HarnessError, OSError, subprocess.SubprocessError) as error:
        log(f"clean-up step failed: {error}")
        return False
