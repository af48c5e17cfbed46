"""Safe promotion against a real ``mlflow server``: what "no champion" means, server errors,
the trivial baseline a first version must beat, and two trainers finishing together.

Where a test needs the server to misbehave or two trainers to interleave in one precise order,
the trainers talk to it through ``proxy``: a real HTTP reverse proxy that forwards every request
and can hold one back, or answer it with a server error, by method and path.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ml_model import registry
from ml_model.config import load_config
from ml_model.errors import UserError
from ml_model.train import train
from tests.support.mlflow_server import MlflowServer
from tools.processes import environ_without

from .conftest import QUICK, Trainer

CLI = str(Path(sys.executable).parent / "ml-model")
ALIAS_ENDPOINT = "/api/2.0/mlflow/registered-models/alias"  # GET reads an alias, POST moves it
WEAK = ["model.params.n_estimators=15", "model.params.max_depth=1"]
MEDIUM = ["model.params.n_estimators=60", "model.params.max_depth=2"]
STRONG = ["model.early_stopping_rounds=30"]  # the shipped config: better than MEDIUM
HOLD_TIMEOUT = 300.0

# (method, path) -> None to forward the request, or an HTTP status to answer with instead;
# it may block to hold the request back.
Intercept = Callable[[str, str], int | None]
Forwarded = Callable[[str, str], None]


@contextmanager
def proxy(
    upstream: str, intercept: Intercept | None = None, forwarded: Forwarded | None = None
) -> Iterator[str]:
    """Run a reverse proxy to ``upstream`` until the block ends; yields its URL.
    ``forwarded`` is called once the upstream's answer to a request has been passed on."""
    target = urlsplit(upstream)
    skip = {"connection", "content-length", "date", "host", "keep-alive", "server"}
    skip.add("transfer-encoding")  # the answer is passed on whole, with its length

    class Forward(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            route = (self.command, urlsplit(self.path).path)
            status = intercept(*route) if intercept else None
            if status is not None:
                error = b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'
                self.answer(status, {"Content-Type": "application/json"}, error)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            upstream_connection = http.client.HTTPConnection(
                target.hostname, target.port, timeout=HOLD_TIMEOUT
            )
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                upstream_connection.request(self.command, self.path, body or None, headers)
                response = upstream_connection.getresponse()
                payload = response.read()
            finally:
                upstream_connection.close()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in skip}
            self.answer(response.status, kept, payload)
            if forwarded:
                forwarded(*route)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one  # noqa: N815

        def answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def failing_champion_reads(method: str, path: str) -> int | None:
    """Answer every read of an alias with a server error; forward everything else."""
    return 500 if (method, path) == ("GET", ALIAS_ENDPOINT) else None


def run_cli_train(
    tracking_uri: str, log: Path, *overrides: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``ml-model train`` on the bundled regression config; its output goes to ``log``."""
    sets = [item for override in [*QUICK, *overrides] for item in ("--set", override)]
    config = Path(__file__).resolve().parents[2] / "configs" / "regression.yaml"
    env = {**environ_without("MLFLOW_", "ML_MODEL_"), "MLFLOW_TRACKING_URI": tracking_uri}
    handle = log.open("w")
    return subprocess.Popen(
        [CLI, "train", "--config", str(config), *sets],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, **(extra_env or {})},
    )


def registered_version(output: str) -> str:
    """The version a finished ``ml-model train`` printed (``run <id>: <name> v<N> (...)``)."""
    match = re.search(r"^run \w+: \S+ v(\d+) ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_missing_alias_or_model_means_no_champion_on_server_and_sqlite(
    tracking: MlflowClient, tmp_path: Path
) -> None:
    embedded = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for client in (tracking, MlflowClient(tracking_uri=embedded, registry_uri=embedded)):
        assert registry.champion_version(client, "promotion-never-registered") is None
        client.create_registered_model("promotion-no-alias")
        assert registry.champion_version(client, "promotion-no-alias") is None


def test_champion_read_server_error_is_an_error_not_no_champion(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with (
        proxy(mlflow_server.url, failing_champion_reads) as url,
        pytest.raises(UserError) as caught,
    ):
        registry.champion_version(MlflowClient(url), "promotion-anything")
    message = str(caught.value)
    assert message.startswith("cannot read the champion of model 'promotion-anything'")
    assert "\n" not in message
    assert "500" in message


def test_server_error_before_the_decision_fails_the_run_and_keeps_the_champion(
    train_config: Trainer, tracking: MlflowClient, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    name, experiment = "promotion-server-error", "promotion-server-error"
    names = [f"mlflow.registered_model={name}", f"mlflow.experiment={experiment}"]
    champion = train_config("regression.yaml", *names, *WEAK)
    assert champion.promotion.promoted
    log = tmp_path / "train.log"
    with proxy(mlflow_server.url, failing_champion_reads) as url:
        trainer = run_cli_train(
            url, log, *names, *STRONG, extra_env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        )
        assert trainer.wait(timeout=300) == 1, log.read_text()
    output = log.read_text()
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert f"cannot read the champion of model '{name}' (alias left unchanged)" in errors[0]
    assert "Traceback" not in output
    # nothing promoted, the new version gone, the run marked FAILED
    assert tracking.get_model_version_by_alias(name, "champion").version == champion.version
    versions = tracking.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == [champion.version]
    experiment_id = tracking.get_experiment_by_name(experiment).experiment_id
    runs = tracking.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
    assert [run.info.status for run in runs] == ["FAILED", "FINISHED"]


def noise_table(path: Path, source: Path) -> Path:
    """The penguins with a binary target drawn at random (3:1), independent of every feature:
    nothing to learn, so a deep model only overfits and loses to the class priors."""
    frame = pd.read_csv(source)
    rng = np.random.default_rng(7)
    frame["tagged"] = np.where(rng.random(len(frame)) < 0.75, "no", "yes")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("require", [True, False])
def test_first_binary_version_worse_than_the_class_priors_is_not_promoted(
    tracking: MlflowClient, tmp_path: Path, penguins_csv: Path, require: bool
) -> None:
    name = f"promotion-baseline-{str(require).lower()}"
    raw = {
        "data": {
            "source": str(noise_table(tmp_path / "noise.csv", penguins_csv)),
            "target": "tagged",
        },
        "task": "binary",
        "model": {"params": {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.3}},
        "mlflow": {"experiment": "promotion-baseline", "registered_model": name},
        "promotion": {"metric": "log_loss", "require_beat_baseline": require},
    }
    path = tmp_path / "noise.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = train(load_config(path, QUICK), path)

    metrics = tracking.get_run(result.run_id).data.metrics
    assert {"baseline_accuracy", "baseline_f1", "baseline_log_loss", "baseline_roc_auc"} <= set(
        metrics
    )
    assert metrics["baseline_roc_auc"] == 0.5
    assert metrics["test_log_loss"] > metrics["baseline_log_loss"]  # worse than the priors
    version = tracking.get_model_version(name, result.version)
    if require:
        assert not result.promotion.promoted
        reason = result.promotion.reason
        assert reason.startswith("first version: log_loss ")
        assert "does not beat the trivial baseline's" in reason
        assert f"{metrics['baseline_log_loss']:.6g}" in reason
        assert f"{metrics['test_log_loss']:.6g}" in reason
        assert version.tags[registry.TAG_DECISION] == "rejected"
        assert float(version.tags[registry.TAG_BASELINE]) == metrics["baseline_log_loss"]
        assert version.description == f"Not promoted: {reason}"
        assert registry.champion_version(tracking, name) is None
    else:
        assert result.promotion.promoted
        assert result.promotion.reason == "first version: no champion yet"
        assert registry.TAG_BASELINE not in version.tags
        assert tracking.get_model_version_by_alias(name, "champion").version == result.version


def test_first_regression_version_beats_the_mean_and_shows_both_numbers(
    train_config: Trainer, tracking: MlflowClient
) -> None:
    name = "promotion-first-regression"
    result = train_config("regression.yaml", f"mlflow.registered_model={name}", *WEAK)
    metrics = tracking.get_run(result.run_id).data.metrics
    assert {"baseline_rmse", "baseline_mae", "baseline_r2"} <= set(metrics)
    assert abs(metrics["baseline_r2"]) < 0.05  # the training mean, scored on other rows
    assert result.promotion.promoted
    assert result.promotion.reason == (
        f"first version: rmse {metrics['test_rmse']:.6g} beats the trivial baseline's "
        f"{metrics['baseline_rmse']:.6g} on the same held-out data (minimize)"
    )
    version = tracking.get_model_version(name, result.version)
    assert version.tags[registry.TAG_DECISION] == "promoted"
    assert registry.TAG_PREVIOUS not in version.tags
    assert tracking.get_model_version_by_alias(name, "champion").version == result.version


def race(upstream: str, logs: Path, held: list[str], free: list[str]) -> dict[str, str]:
    """Run two trainers at once (``ml-model train`` with the ``held`` and ``free`` overrides),
    each through its own proxy to ``upstream``, forced into the worst order: "held" reads the
    champion first, but its re-read just before moving the alias is held back until "free" has
    moved the alias to itself. Returns each trainer's output."""
    held_read, free_moved = threading.Event(), threading.Event()
    held_reads: list[str] = []
    problems: list[str] = []

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(HOLD_TIMEOUT):
            problems.append(f"timed out waiting for {what}")

    def held_intercept(method: str, path: str) -> None:
        if (method, path) == ("GET", ALIAS_ENDPOINT):
            held_reads.append(path)
            if len(held_reads) == 2:  # the re-read just before its alias move
                wait(free_moved, "the free trainer's alias move")

    def held_forwarded(method: str, path: str) -> None:
        if (method, path) == ("GET", ALIAS_ENDPOINT):
            held_read.set()

    def free_intercept(method: str, path: str) -> None:
        if (method, path) == ("POST", ALIAS_ENDPOINT):
            wait(held_read, "the held trainer's first champion read")

    def free_forwarded(method: str, path: str) -> None:
        if (method, path) == ("POST", ALIAS_ENDPOINT):
            free_moved.set()

    long_calls = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(HOLD_TIMEOUT) + 60)}
    with (
        proxy(upstream, held_intercept, held_forwarded) as held_url,
        proxy(upstream, free_intercept, free_forwarded) as free_url,
    ):
        trainers = {
            "held": run_cli_train(held_url, logs / "held.log", *held, extra_env=long_calls),
            "free": run_cli_train(free_url, logs / "free.log", *free, extra_env=long_calls),
        }
        for role, trainer in trainers.items():
            assert trainer.wait(timeout=2 * HOLD_TIMEOUT) == 0, (logs / f"{role}.log").read_text()
    assert problems == []
    return {role: (logs / f"{role}.log").read_text() for role in trainers}


@pytest.mark.parametrize(
    ("held", "free", "held_wins"),
    [(STRONG, MEDIUM, True), (MEDIUM, STRONG, False)],
    ids=["later-finisher-better", "later-finisher-worse"],
)
def test_concurrent_trainers_leave_the_champion_on_the_better_model(
    train_config: Trainer,
    tracking: MlflowClient,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    held: list[str],
    free: list[str],
    held_wins: bool,
) -> None:
    """Both trainers beat the champion C0; "held" must notice that "free" took the alias while
    it decided, judge itself against "free", and take the alias only if it beats "free"."""
    name = f"promotion-race-{'better' if held_wins else 'worse'}"
    names = [f"mlflow.registered_model={name}", f"mlflow.experiment={name}"]
    c0 = train_config("regression.yaml", *names, *WEAK)  # also creates model and experiment
    output = race(mlflow_server.url, tmp_path, [*names, *held], [*names, *free])
    v_held, v_free = (registered_version(output[role]) for role in ("held", "free"))

    def rmse(version: str) -> float:
        run_id = tracking.get_model_version(name, version).run_id
        return tracking.get_run(run_id).data.metrics["test_rmse"]

    assert (rmse(v_held) < rmse(v_free)) is held_wins  # the configs differ in quality as meant
    assert rmse(v_free) < c0.metrics["rmse"]

    # the free trainer beat C0 and moved the alias first
    free_tags = tracking.get_model_version(name, v_free).tags
    assert free_tags[registry.TAG_DECISION] == "promoted"
    assert free_tags[registry.TAG_PREVIOUS] == c0.version
    assert float(free_tags[registry.TAG_CHAMPION]) == pytest.approx(c0.metrics["rmse"], rel=1e-9)

    # the held trainer saw the champion change under it and judged itself against the new one
    assert f"the champion of {name} moved to v{v_free} meanwhile: judging again" in output["held"]
    held_version = tracking.get_model_version(name, v_held)
    tags = held_version.tags
    assert float(tags[registry.TAG_CHAMPION]) == pytest.approx(rmse(v_free), rel=1e-9)
    assert f"vs champion v{v_free} " in tags[registry.TAG_REASON]
    champion = tracking.get_model_version_by_alias(name, "champion").version
    if held_wins:
        assert tags[registry.TAG_DECISION] == "promoted"
        assert tags[registry.TAG_PREVIOUS] == v_free  # rollback gives the alias back to "free"
        assert held_version.description.startswith("Promoted to champion: beats the champion")
        assert champion == v_held
    else:
        assert tags[registry.TAG_DECISION] == "rejected"
        assert registry.TAG_PREVIOUS not in tags  # no leftover of its first, promoting verdict
        assert held_version.description.startswith("Not promoted: does not beat the champion")
        assert champion == v_free
    for version in (v_held, v_free):
        run_id = tracking.get_model_version(name, version).run_id
        assert tracking.get_run(run_id).info.status == "FINISHED"
