"""The prediction API as it runs for real: ``prediction-api`` (uvicorn) in its own process,
and a load generator that posts to it while the registry or the services behind it change."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support import service_logs
from tools.processes import ServerProcess, environ_without, free_port, http_ok, running

ENTRYPOINT = str(Path(sys.executable).with_name("prediction-api"))
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Api:
    url: str
    process: ServerProcess

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}{path}", timeout=30, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until ``/ready`` answers 200."""
        start = time.monotonic()
        self.process.wait_until(lambda: http_ok(f"{self.url}/ready"), timeout, interval=0.05)
        return time.monotonic() - start


StartApi = Callable[..., Any]


def api_starter(folder: Path) -> StartApi:
    """``with start(model_name, tracking_uri, **settings) as api``: ``prediction-api`` on a free
    port, awaited on ``/health`` only (it must start without a model); ``settings`` are the
    variable names without their ``API_`` prefix, in lower case; ``environment`` adds other
    variables (e.g. the prediction log's ``MONITORING_DB_URL``)."""

    @contextmanager
    def start(
        model: str,
        tracking_uri: str,
        environment: dict[str, str] | None = None,
        **settings: str,
    ) -> Iterator[Api]:
        port = free_port()
        env = environ_without("API_", "MLFLOW_")
        env.update(
            MLFLOW_TRACKING_URI=tracking_uri,
            API_MODEL_NAME=model,
            API_PORT=str(port),
            API_POLL_INTERVAL_SECONDS="0.5",
        )
        env.update({f"API_{name.upper()}": value for name, value in settings.items()})
        env.update(environment or {})
        url = f"http://127.0.0.1:{port}"
        log = folder / f"api-{port}.log"
        service_logs.register(f"prediction-api {url}", log)
        try:
            with running(
                "prediction-api",
                [ENTRYPOINT],
                log,
                lambda: http_ok(f"{url}/health"),
                env=env,
                cwd=folder,
                timeout=60,
            ) as process:
                yield Api(url, process)
        finally:
            service_logs.unregister(f"prediction-api {url}")

    return start


@contextmanager
def mlflow_models_serve(
    model_uri: str, tracking_uri: str, folder: Path, workers: int = 1
) -> Iterator[str]:
    """``mlflow models serve --env-manager local`` on ``model_uri`` (e.g. ``models:/name/1``)
    on a free port, awaited on ``/ping``; yields its base URL."""
    port = free_port()
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = environ_without("MLFLOW_")
    # It execs `uvicorn` by name: this environment's own must come first on PATH.
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    url = f"http://127.0.0.1:{port}"
    log = folder / f"mlflow-serve-{port}.log"
    service_logs.register(f"mlflow models serve {url}", log)
    try:
        with running(
            "mlflow models serve",
            argv,
            log,
            lambda: http_ok(f"{url}/ping"),
            env=env,
            cwd=folder,
            timeout=300,
        ):
            yield url
    finally:
        service_logs.unregister(f"mlflow models serve {url}")


class Load:
    """Threads posting the same record over keep-alive connections until stopped."""

    def __init__(self, url: str, record: dict[str, Any], threads: int = 4) -> None:
        self.url, self.body = url, json.dumps(record)
        self.results: list[list[tuple[int, str, float]]] = [[] for _ in range(threads)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, index: int) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(
                    f"{self.url}/predict",
                    data=self.body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            if response.status_code != 200:
                self.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            answer = response.json()
            self.results[index].append(
                (time.monotonic_ns(), answer["version"], answer["predictions"][0])
            )

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def answered(self) -> int:
        """Successful answers so far, over all threads."""
        return sum(map(len, self.results))

    def versions(self) -> set[str]:
        return {version for results in self.results for _, version, _ in results}
