"""What the e2e tests do to and ask of the running stack: health, processes, HTTP, training."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tools.e2e import compose
from tools.e2e.engine import docker_cli
from tools.e2e.proc import run, tail
from tools.processes import poll

T = TypeVar("T")
TRAIN_CONFIG = "/app/ml_model/configs/regression.yaml"
MODEL_NAME = "penguins-body-mass"


@dataclass
class Scenario:
    """Steps of the scenario that passed, and what they found, shared by the ordered tests."""

    passed: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)

    def require(self, *steps: str) -> None:
        for step in steps:
            if step not in self.passed:
                pytest.skip(f"needs step {step!r} of the scenario, which failed or did not run")


def wait_for(
    what: str | Callable[[], str],
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 2,
) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout``
    (``what`` may be a function, to describe what is still missing at that point)."""
    try:
        return poll(probe, what, timeout, interval)
    except TimeoutError as error:
        pytest.fail(str(error))


# --- compose services and containers ------------------------------------------------------------


def service_config(stack: compose.Stack) -> dict[str, Any]:
    """The services `up` starts (those without a profile), as `docker compose config` resolves
    them."""
    services: dict[str, Any] = yaml.safe_load(stack.run("config").stdout)["services"]
    return {name: svc for name, svc in services.items() if not svc.get("profiles")}


def containers_by_service(stack: compose.Stack) -> dict[str, dict[str, Any]]:
    """`docker inspect` of the project's service containers (one-off `run` ones left out)."""
    found = {}
    for container in stack.inspect():
        labels = container["Config"]["Labels"]
        if labels.get("com.docker.compose.oneoff") != "True":
            found[labels["com.docker.compose.service"]] = container
    return found


def container_logs(container_id: str, lines: int = 40) -> str:
    result = run([docker_cli(), "logs", "--tail", str(lines), container_id], check=False)
    return tail(result.stdout + result.stderr, lines)


def wait_until_healthy(stack: compose.Stack, timeout: float) -> dict[str, str]:
    """Wait until every long-running service is healthy and every one-shot job exited 0;
    fail at once when a container exits, restarts or turns unhealthy. Returns the states."""
    services = service_config(stack)
    long_running = [name for name, svc in services.items() if "restart" in svc]
    one_shot = [name for name in services if name not in long_running]

    last: dict[str, str] = {}

    def probe() -> dict[str, str] | None:
        containers = containers_by_service(stack)
        states, pending = {}, []
        for name in services:
            container = containers.get(name)
            if container is None:
                pending.append(name)
                continue
            state = container["State"]
            health = (state.get("Health") or {}).get("Status")
            states[name] = health or f"{state['Status']} ({state['ExitCode']})"
            broken = ""
            if name in one_shot:
                if state["Status"] == "exited" and state["ExitCode"] != 0:
                    broken = f"one-shot job exited with {state['ExitCode']}"
                elif state["Status"] != "exited":
                    pending.append(name)
            elif health is None:
                broken = "long-running service without a healthcheck"
            elif state["Status"] != "running" or container["RestartCount"]:
                restarts = container["RestartCount"]
                broken = f"{state['Status']}, exit {state['ExitCode']}, restarts {restarts}"
            elif health == "unhealthy":
                broken = "unhealthy"
            elif health != "healthy":
                pending.append(name)
            if broken:
                pytest.fail(f"service {name}: {broken}\n{container_logs(container['Id'])}")
        last.clear()
        last.update({name: states.get(name, "not created") for name in pending})
        return None if pending else states

    return wait_for(
        lambda: f"every service to be healthy; still waiting for {last}", probe, timeout
    )


def process_uids(container: dict[str, Any]) -> dict[str, set[int]]:
    """Real/effective/saved/fs uids of the container's main process (read from /proc on the
    host) and of every process in it (`docker top`), keyed by process."""
    pid = container["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    main = {int(uid) for uid in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()}  # type: ignore[union-attr]
    uids = {f"pid {pid} (main)": main}
    top = run([docker_cli(), "top", container["Id"], "-eo", "uid,pid,comm"]).stdout.splitlines()
    for line in top[1:]:
        uid, proc_pid, comm = line.split(None, 2)
        uids.setdefault(f"pid {proc_pid} ({comm})", set()).add(int(uid))
    return uids


def non_loopback_ipv4() -> list[str]:
    """IPv4 addresses of this machine other than 127.0.0.0/8 (bridges included)."""
    try:
        output = subprocess.run(
            ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    addresses = [line.split()[3].split("/")[0] for line in output.splitlines()]
    return [address for address in addresses if not address.startswith("127.")]


def connects(host: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    request_id: str = ""  # the X-Request-ID header

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def http(method: str, url: str, payload: Any = None, timeout: float = 30) -> Response:
    """One request; HTTP errors come back as responses, connection errors raise OSError."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers = response.headers
            body = response.read()
            return Response(
                response.status, body, headers["Content-Type"], headers.get("X-Request-ID", "")
            )
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read(), error.headers.get("Content-Type", ""))


def answers(url: str, status: int = 200) -> Response | None:
    """The response when ``url`` answers GET with ``status``, else None (for wait_for)."""
    try:
        response = http("GET", url, timeout=10)
    except OSError:
        return None
    return response if response.status == status else None


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    model: str
    version: str
    promoted: bool
    output: str


def train(
    stack: compose.Stack,
    *args: str,
    timeout: float = 1200,
    service: str = "train-cpu",
    profiles: tuple[str, ...] = (),
) -> TrainingRun:
    """`docker compose run --rm SERVICE [ARGS]` (no ARGS: the image's default command, the
    default config); fails the test with the output when the job fails."""
    result = stack.run(
        "run", "--rm", service, *args, profiles=profiles, check=False, timeout=timeout
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(
            f"`run --rm {service} {' '.join(args)}` exited {result.returncode}:\n{tail(output, 60)}"
        )
    match = re.search(r"run (\w+): (\S+) v(\d+) \(", output)
    assert match, f"no 'run ID: MODEL vN' line in the trainer's output:\n{tail(output, 60)}"
    promoted = "promoted to champion" in output and "not promoted" not in output
    return TrainingRun(match.group(1), match.group(2), match.group(3), promoted, output)


def registry_champion(stack: compose.Stack) -> dict[str, Any]:
    """The model version the champion alias points at, from the MLflow REST API."""
    url = (
        f"http://127.0.0.1:{stack.port('MLFLOW_HOST_PORT')}/api/2.0/mlflow/registered-models/"
        f"alias?name={MODEL_NAME}&alias=champion"
    )
    response = http("GET", url)
    assert response.status == 200, f"GET {url}: {response.status} {response.text}"
    version: dict[str, Any] = response.json()["model_version"]
    return version


# --- the Spark cluster (profile `spark`) --------------------------------------------------------

SPARK = ("spark",)
# Read in the Spark image, where the volume is mounted: the job's manifest, the rows of its
# parts and rejects, and its first complete rows (features and prediction), as one JSON line.
READ_SCORES = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
folder = Path(sys.argv[1])
table = pq.read_table(folder).to_pandas()
rejects = folder / "_rejects"
print(json.dumps({
    "manifest": json.loads((folder / "_manifest.json").read_text()),
    "rows": len(table),
    "rejects": len(pq.read_table(rejects)) if any(rejects.glob("*.parquet")) else 0,
    "columns": list(table.columns),
    "null_predictions": int(table["prediction"].isna().sum()),
    "sample": table.dropna().head(3).to_dict("records"),
}, default=str))
"""


@dataclass(frozen=True)
class SparkScores:
    manifest: dict[str, Any]
    rows: int
    rejects: int
    columns: list[str]
    null_predictions: int
    sample: list[dict[str, Any]]


def read_scores(stack: compose.Stack, folder: str) -> SparkScores:
    """What a scoring job left in ``folder`` of the shared volume, read in the Spark image."""
    result = stack.run(
        "run", "--rm", "--no-deps", "--entrypoint", "python", "score-spark",
        "-c", READ_SCORES, folder,
        profiles=SPARK, check=False, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"reading {folder} failed:\n{tail(result.stdout + result.stderr, 40)}")
    return SparkScores(**json.loads(result.stdout.strip().splitlines()[-1]))


def spark_master_state(stack: compose.Stack) -> dict[str, Any] | None:
    """The master's JSON status page on its published port, or None while it does not answer."""
    response = answers(f"http://127.0.0.1:{stack.port('SPARK_MASTER_UI_HOST_PORT')}/json/")
    return response.json() if response else None
