"""``ml-model monitor``: for every version of a registered model that served traffic in the
window, compare that traffic with the version's reference profile, compute the live metrics
from the true outcomes sent as feedback, and record one MLflow run per check in the experiment
``monitoring/<model>`` (tags ``model``, ``version``; metrics per feature; ``drift.json`` and
``drift.png``).

A version is reported in one of these states: ``checked``, ``not enough rows yet`` (fewer than
``min_rows`` in the window; nothing is logged), ``no reference for this version`` (registered
before the trainer logged profiles), ``store unreachable``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient

from ml_model import registry, tracking
from ml_model.config import Task
from ml_model.metrics import classification_metrics, regression_metrics
from ml_model.monitoring.drift import DriftReport, drift_report
from ml_model.monitoring.plots import drift_figure
from ml_model.monitoring.reference import REFERENCE_ARTIFACT, Profile
from ml_model.monitoring.store import PredictionStore, StoreError, VersionTable
from ml_model.preprocessing import FeatureSchema, clean_frame
from ml_model.settings import load_settings

logger = logging.getLogger("ml_model.monitoring")

CHECKED = "checked"
NOT_ENOUGH_ROWS = "not enough rows yet"
NO_REFERENCE = "no reference for this version"
STORE_UNREACHABLE = "store unreachable"
MIN_ROWS = 100
EXPERIMENT_PREFIX = "monitoring/"


@dataclass(frozen=True)
class VersionCheck:
    model: str
    version: str
    state: str
    rows: int = 0
    labelled_rows: int = 0
    drifted_features: list[str] = field(default_factory=list)
    drifted_share: float = 0.0
    prediction_drifted: bool = False
    live: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    def line(self) -> str:
        """One line for the console."""
        head = f"{self.model} v{self.version}: {self.state}"
        if self.state == NOT_ENOUGH_ROWS:
            return f"{head} ({self.rows} rows in the window)"
        if self.state != CHECKED:
            return head
        drifted = ", ".join(self.drifted_features) or "none"
        live = "".join(f", live {k} {v:.4g}" for k, v in self.live.items())
        prediction = "drifted" if self.prediction_drifted else "stable"
        return (
            f"{head}, {self.rows} rows, drifted features: {drifted} "
            f"({self.drifted_share:.0%}), predictions {prediction}{live}"
        )


def signature_features(signature: ModelSignature | None) -> dict[str, str]:
    """Feature name → MLflow type name, from a model's input signature."""
    if signature is None or signature.inputs is None:
        return {}
    return {str(spec.name): spec.type.name for spec in signature.inputs.inputs}


def version_table(
    model: str, version: str, signature: ModelSignature | None, task: Task
) -> VersionTable:
    """The prediction log table of ``model`` ``version`` (the API's and the monitor's view)."""
    regression = task is Task.REGRESSION
    return VersionTable.for_version(model, version, signature_features(signature), regression)


def parse_window(text: str) -> dt.timedelta:
    """``30m``, ``24h`` or ``7d``."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not match or int(match[1]) == 0:
        raise ValueError(
            f"window {text!r}: expected a positive number of minutes, hours or days (30m, 24h, 7d)"
        )
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return dt.timedelta(**{unit: int(match[1])})


def live_metrics(task: Task, frame: pd.DataFrame, reference: Profile) -> dict[str, float]:
    """Metrics of the logged predictions against the feedback labels (rows with a label)."""
    labelled = frame[frame["_label"].notna()]
    if labelled.empty:
        return {}
    if task is Task.REGRESSION:  # labels that are not numbers are left out
        numbers = pd.to_numeric(labelled["_label"], errors="coerce")
        valid = numbers.notna()
        if not valid.any():
            return {}
        return regression_metrics(
            numbers[valid].to_numpy(float), labelled["_prediction"][valid].to_numpy(float)
        )
    classes = np.asarray(reference.classes or [], dtype=object)
    known = labelled[labelled["_label"].astype(str).isin(classes)]  # unknown labels left out
    if known.empty:
        return {}
    proba = np.asarray([json.loads(p) for p in known["_probabilities"]], dtype=float)
    return classification_metrics(
        known["_label"].astype(str).to_numpy(object),
        known["_prediction"].astype(str).to_numpy(object),
        proba,
        classes,
    )


def _metric_name(text: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", text)


def log_check(
    client: MlflowClient,
    check: VersionCheck,
    report: DriftReport,
    reference: Profile,
    window: pd.DataFrame,
) -> str:
    """Record one check as an MLflow run; its id."""
    experiment = EXPERIMENT_PREFIX + check.model
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    metrics = {
        "rows": float(check.rows),
        "labelled_rows": float(check.labelled_rows),
        "drifted_share": check.drifted_share,
        "drifted_features": float(len(check.drifted_features)),
        "prediction_psi": report.prediction.psi,
        "prediction_drifted": float(report.prediction.drifted),
        **{f"live_{k}": v for k, v in check.live.items()},
    }
    for feature in report.features:
        name = _metric_name(feature.name)
        metrics[f"psi.{name}"] = feature.psi
        metrics[f"drifted.{name}"] = float(feature.drifted)
        metrics[f"missing_rate_change.{name}"] = feature.missing_rate_change
        if feature.name in reference.categorical:
            metrics[f"unseen_share.{name}"] = feature.unseen_share
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"v{check.version} {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}",
        tags={"model": check.model, "version": check.version, "state": check.state},
    ) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_dict(
            {
                "check": asdict(check) | {"run_id": None},
                "features": [asdict(f) for f in report.features],
                "prediction": asdict(report.prediction),
            },
            "drift.json",
        )
        mlflow.log_figure(drift_figure(reference, window, report), "drift.png")
    return str(run.info.run_id)


def check_version(
    client: MlflowClient,
    store: PredictionStore,
    model: str,
    version: ModelVersion,
    since: dt.datetime,
    min_rows: int = MIN_ROWS,
) -> VersionCheck:
    """Check ``version``'s traffic logged since ``since``."""
    run = client.get_run(str(version.run_id))
    task = Task(run.data.tags.get("task", Task.REGRESSION))
    info = mlflow.models.get_model_info(f"models:/{model}/{version.version}")
    spec = version_table(model, version.version, info.signature, task)
    try:
        frame = store.window(spec, since)
    except StoreError as exc:
        logger.warning("%s v%s: %s", model, version.version, exc)
        return VersionCheck(model, version.version, STORE_UNREACHABLE)
    if len(frame) < min_rows:
        return VersionCheck(model, version.version, NOT_ENOUGH_ROWS, rows=len(frame))
    try:
        reference = Profile.from_dict(
            mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{REFERENCE_ARTIFACT}")
        )
    except (MlflowException, OSError):
        return VersionCheck(model, version.version, NO_REFERENCE, rows=len(frame))
    schema = FeatureSchema(tuple(reference.numeric), tuple(reference.categorical))
    window = clean_frame(frame, schema)
    report = drift_report(reference, window, frame["_prediction"])
    check = VersionCheck(
        model,
        version.version,
        CHECKED,
        rows=len(frame),
        labelled_rows=int(frame["_label"].notna().sum()),
        drifted_features=report.drifted_features,
        drifted_share=report.drifted_share,
        prediction_drifted=report.prediction.drifted,
        live=live_metrics(task, frame, reference),
    )
    run_id = log_check(client, check, report, reference, window)
    return VersionCheck(**{**asdict(check), "run_id": run_id})


def served_versions(client: MlflowClient, model: str) -> Iterator[ModelVersion]:
    """Every version of ``model``, newest first; the champion is among them."""
    yield from sorted(
        client.search_model_versions(f"name = '{model}'"), key=lambda v: -int(v.version)
    )


def monitor_once(
    client: MlflowClient,
    store: PredictionStore,
    models: list[str],
    window: dt.timedelta,
    min_rows: int = MIN_ROWS,
) -> list[VersionCheck]:
    """Check every version of ``models`` that has rows in the window (the champion always)."""
    since = dt.datetime.now(dt.UTC) - window
    checks = []
    for model in models:
        champion = registry.champion_version(client, model)
        for version in served_versions(client, model):
            check = check_version(client, store, model, version, since, min_rows)
            is_champion = champion is not None and champion.version == version.version
            if check.rows or is_champion or check.state == STORE_UNREACHABLE:
                checks.append(check)
    return checks


def run_monitor(
    models: list[str],
    window: dt.timedelta,
    every: dt.timedelta | None,
    min_rows: int = MIN_ROWS,
    echo: Callable[[str], None] = print,
    heartbeat: Path | None = None,
) -> list[VersionCheck]:
    """Check ``models`` (every registered model when empty) once, or every ``every`` until
    interrupted; each round also deletes rows past the retention and then touches
    ``heartbeat`` (a container's health check reads its age). The last round's checks."""
    settings = load_settings()
    tracking.connect()
    client = MlflowClient()
    store = PredictionStore(settings.monitoring_store_url)
    try:
        while True:
            names = models or [m.name for m in client.search_registered_models()]
            checks = monitor_once(client, store, names, window, min_rows)
            for check in checks:
                echo(check.line())
            if not checks:
                echo(f"no traffic in the last {window} for {', '.join(names) or 'any model'}")
            try:
                removed = store.purge(settings.retention_days)
                if removed:
                    echo(f"removed {removed} rows older than {settings.retention_days} days")
            except StoreError as exc:
                echo(f"retention skipped: {exc}")
            if heartbeat is not None:
                heartbeat.touch()
            if every is None:
                return checks
            time.sleep(every.total_seconds())
    finally:
        store.close()
