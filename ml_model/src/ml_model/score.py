"""``ml-model score``: score a table of files with one pinned model version, locally or on Spark.

The job resolves ``models:/NAME@ALIAS`` once and works with that version only (an alias moved
mid-job cannot mix versions), downloads it once and hands its bytes to whoever scores. The
input is listed once into units (``inputs``); each unit is read, validated and scored by the
inference engine and written as its own parts (``parts``): in this process (``local``, one
unit after another, every core for XGBoost) or as Spark tasks (``spark``, one core each).

The output folder holds ``part-*.parquet`` (key columns, ``prediction``, the class
probabilities, model name, version and run id), ``_rejects/`` (rejected rows with their
``reason``) and ``_manifest.json``, written last: a folder without a manifest is incomplete.
Each job is one MLflow run in the experiment ``batch-scoring``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml_model import inputs
from ml_model.batch import ModelIdentity
from ml_model.engine import InputReport
from ml_model.errors import UserError
from ml_model.links import redacted
from ml_model.parts import REJECTS, TEMPORARY_PREFIX, ModelPayload, UnitStats, score_unit

logger = logging.getLogger("ml_model")

EXPERIMENT = "batch-scoring"
MANIFEST = "_manifest.json"
ENGINES = ("local", "spark")
PROGRESS_SECONDS = 5.0
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class PinnedModel:
    identity: ModelIdentity
    requested: str  # the URI as given, e.g. models:/NAME@champion

    @property
    def uri(self) -> str:
        return f"models:/{self.identity.name}/{self.identity.version}"


def pin(model_uri: str) -> PinnedModel:
    """The version ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) names now."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    match = _MODEL_URI.match(model_uri)
    if match is None:
        raise UserError(
            f"--model-uri must be models:/NAME@ALIAS or models:/NAME/VERSION, not {model_uri}"
        )
    name, alias, version = match["name"], match["alias"], match["version"]
    client = MlflowClient()
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as exc:
        raise UserError(f"cannot resolve {model_uri}: {exc.message}") from None
    identity = ModelIdentity(name, str(found.version), str(found.run_id or ""))
    return PinnedModel(identity, model_uri)


def prepare_output(output: Path) -> None:
    """Create the output folder; refuse one that already holds anything (a previous job's
    parts would mix with this one's)."""
    if str(output).startswith("s3://"):
        raise UserError("--output must be a local or shared folder, not s3://")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"output folder {output} is not empty; choose a new one or remove it")
    output.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class JobResult:
    output: Path
    rows: int
    rejects: int
    seconds: float
    run_id: str
    manifest: dict[str, Any]
    report: InputReport


def score_job(
    model_uri: str,
    input_spec: str,
    output: Path,
    engine: str = "local",
    master: str | None = None,
    keys: Sequence[str] | None = None,
    spark: Any = None,
) -> JobResult:
    """Score ``input_spec`` into ``output`` with the version ``model_uri`` names now, on
    ``engine`` (``spark``: the session ``spark``, or one built for ``master``). ``keys``: the
    input columns copied to the output (default: every input column)."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {engine}")
    if engine == "spark" and spark is None:
        from ml_model.spark.session import require_spark

        require_spark()  # before any work: one clear line when Spark cannot run here
    started, timings = time.perf_counter(), {}
    files = inputs.list_inputs(input_spec)
    prepare_output(output)
    output = output.resolve()  # executors run in folders of their own
    import mlflow

    from ml_model import tracking
    from ml_model.model_io import download_model

    tracking.connect()
    pinned = pin(model_uri)
    with tempfile.TemporaryDirectory(prefix="ml-model-score-") as tmp:
        payload = ModelPayload.from_dir(pinned.identity, download_model(pinned.uri, Path(tmp)))
    schema = inputs.schema(files[0].path)
    columns = tuple(keys) if keys else tuple(schema.names)
    scorer = payload.scorer(schema, columns, threads=os.cpu_count() or 1)  # checks the input
    units = inputs.units(files)
    timings["prepare_s"] = round(time.perf_counter() - started, 3)
    logger.info(
        "scoring %d file(s) in %d unit(s) with %s v%s (%s engine)",
        len(files), len(units), pinned.identity.name, pinned.identity.version, engine,
    )  # fmt: skip
    with mlflow.start_run(experiment_id=tracking.experiment_id(EXPERIMENT)) as run:
        mlflow.log_params(
            {
                "model_uri": model_uri,
                "model_name": pinned.identity.name,
                "model_version": pinned.identity.version,
                "model_run_id": pinned.identity.run_id,
                "input": redacted(input_spec),
                "input_files": len(files),
                "output": str(output),
                "engine": engine,
                "spark_master": master or (spark.sparkContext.master if spark else "-"),
            }
        )
        mlflow.set_tag("input_digest", inputs.digest(files))
        scoring = time.perf_counter()
        if engine == "local":
            stats = _score_locally(scorer, units, output)
        else:
            from ml_model.spark.score import score_units

            stats = score_units(spark, master, payload, schema, columns, units, output)
        timings["score_s"] = round(time.perf_counter() - scoring, 3)
        for stale in output.rglob(f"{TEMPORARY_PREFIX}*"):  # left by tasks that were lost
            stale.unlink()
        manifest, report = _manifest(pinned, input_spec, files, engine, stats, timings, started)
        manifest["mlflow_run_id"] = run.info.run_id
        rows, rejects = manifest["rows"], manifest["rejects"]
        seconds = manifest["timings"]["total_s"]
        mlflow.log_metrics(
            {
                "rows": rows,
                "rejects": rejects,
                "duration_s": seconds,
                "rows_per_s": manifest["rows_per_s"],
            }
        )
        mlflow.log_dict(manifest, "manifest.json")
        _write_manifest(output, manifest)
    logger.info("wrote %d predictions and %d rejects to %s", rows, rejects, output)
    return JobResult(output, rows, rejects, seconds, run.info.run_id, manifest, report)


def _score_locally(scorer: Any, units: list[inputs.Unit], output: Path) -> list[UnitStats]:
    stats: list[UnitStats] = []
    start = last = time.perf_counter()
    for unit in units:
        stats.append(score_unit(scorer, unit, output))
        if time.perf_counter() - last >= PROGRESS_SECONDS:
            last = time.perf_counter()
            done = sum(s.rows + s.rejects for s in stats)
            logger.info(
                "%d/%d units, %d rows in %.0fs (%.0f rows/s)",
                len(stats), len(units), done, last - start, done / (last - start),
            )  # fmt: skip
    return stats


def _manifest(
    pinned: PinnedModel,
    input_spec: str,
    files: list[inputs.InputFile],
    engine: str,
    stats: list[UnitStats],
    timings: dict[str, float],
    started: float,
) -> tuple[dict[str, Any], InputReport]:
    report = InputReport()
    for unit in stats:
        report.merge(unit.report)
    rows, rejects = sum(s.rows for s in stats), sum(s.rejects for s in stats)
    timings["total_s"] = round(time.perf_counter() - started, 3)
    manifest = {
        "complete": True,
        "model": {
            "uri": pinned.requested,
            "name": pinned.identity.name,
            "version": pinned.identity.version,
            "run_id": pinned.identity.run_id,
        },
        "input": {"location": redacted(input_spec), "files": len(files)},
        "input_digest": inputs.digest(files),
        "engine": engine,
        "rows": rows,
        "rejects": rejects,
        "input_rows": rows + rejects,
        "parts": len(stats),
        "rejects_folder": REJECTS,
        "unseen_categories": report.unseen,
        "timings": timings,
        "rows_per_s": round((rows + rejects) / max(timings["score_s"], 1e-9), 1),
        "finished_at": datetime.now(UTC).isoformat(),
    }
    return manifest, report


def _write_manifest(output: Path, manifest: dict[str, Any]) -> None:
    """The manifest under a temporary name, renamed into place: it appears whole or not at all."""
    tmp = output / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(output / MANIFEST)
