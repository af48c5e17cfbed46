"""``ml-model``: train, batch-predict and manage registered models from the command line.

Every failure ends with a one-line ``error: ...`` on stderr and exit code 1 (set
ML_MODEL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ml_model.errors import UserError

# Set for every command unless the environment says otherwise; read by libraries at import, so
# applied here, before any of them is imported. NUMPY_MADVISE_HUGEPAGE=0: training's large
# arrays live for seconds, and NumPy asks the kernel to back them with transparent huge pages;
# where memory is fragmented the kernel then compacts it synchronously, seconds on the first
# gigabytes a process allocates (bench/train.py, 1M rows: 1.53x the time of plain XGBoost with
# huge pages, 1.23x without). Setting it to 1 restores NumPy's default.
ENVIRONMENT_DEFAULTS = {"NUMPY_MADVISE_HUGEPAGE": "0"}
for _name, _value in ENVIRONMENT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Train, score and manage scikit-learn + XGBoost models in MLflow.",
)
models_app = typer.Typer(no_args_is_help=True, help="Registered models.")
app.add_typer(models_app, name="models")

F = TypeVar("F", bound=Callable[..., Any])


def reporting_errors(command: F) -> F:
    """Turn any exception into ``error: <cause>`` and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            from ml_model.settings import load_settings

            if load_settings().debug:
                raise
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _one_line(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")  # only raised once imported
    if mlflow_exceptions and isinstance(exc, mlflow_exceptions.MlflowException):
        message = exc.message.strip().splitlines()[0]
        cause = re.search(r"\(Caused by (.*)\)", message)
        if "/mlflow-artifacts/" in message:
            return (
                "the MLflow server could not store or serve artifacts; its artifact store "
                f"may be down ({cause.group(1) if cause else message})"
            )
        return f"MLflow: {message}"
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}".rstrip(": ")


@app.callback()
def main() -> None:
    """Log progress lines to stderr; keep library chatter to warnings."""
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
@reporting_errors
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML training config.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config field: key.path=value (repeatable)."),
    ] = None,
) -> None:
    """Train, evaluate, log, register, and promote when better than the champion."""
    from ml_model.config import load_config
    from ml_model.data import load_data

    # a bad config or table fails in a second or two, before the seconds of importing MLflow
    # and XGBoost (ml_model.train)
    loaded = load_config(config, overrides or [])
    if loaded.engine.kind == "spark":  # the table is read by the cluster, not here
        from ml_model.spark.session import require_spark

        require_spark()
        frame = None
    else:
        frame = load_data(loaded.data)
    from ml_model import links
    from ml_model.settings import load_settings
    from ml_model.train import train as run_training

    result = run_training(loaded, config, frame)
    typer.echo(
        f"run {result.run_id}: {result.registered_model} v{result.version} "
        f"({result.task}) " + " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    )
    typer.echo(
        ("promoted to champion: " if result.promotion.promoted else "not promoted: ")
        + result.promotion.reason
    )
    base = load_settings().ui_url or links.ui_base(result.tracking_uri)
    if not result.tracking_uri.startswith(("http://", "https://")):
        typer.echo(
            f"MLflow UI: `mlflow server --backend-store-uri {result.tracking_uri} --port 5000`"
            " serves this store; then open"
        )
    typer.echo(f"run:   {links.run_url(base, result.experiment_id, result.run_id)}")
    version_url = links.model_version_url(base, result.registered_model, result.version)
    typer.echo(f"model: {version_url}")


@app.command()
@reporting_errors
def predict(
    model_uri: Annotated[str, typer.Option(help="e.g. models:/NAME@champion or runs:/ID/model")],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or Parquet to score.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV or Parquet to write.")],
    chunk_rows: Annotated[
        int, typer.Option(help="Rows scored at a time; memory grows with it, not the file.")
    ] = 50_000,
    allow_missing_columns: Annotated[
        bool, typer.Option(help="Score the model's columns the input lacks as missing.")
    ] = False,
    sep: Annotated[
        str | None, typer.Option(help="CSV separator, one character (default: sniffed).")
    ] = None,
    decimal: Annotated[str | None, typer.Option(help="CSV decimal mark: . or ,")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding (default utf-8).")] = None,
    na_values: Annotated[
        list[str] | None,
        typer.Option("--na-value", help="CSV text read as missing (repeatable)."),
    ] = None,
) -> None:
    """Score a file in batch, streamed in chunks; writes the input columns plus predictions."""
    from pydantic import ValidationError

    from ml_model.config import CsvConfig, describe_validation_error
    from ml_model.predict import predict_file

    given = {"sep": sep, "decimal": decimal, "encoding": encoding, "na_values": na_values}
    options = {k: v for k, v in given.items() if v is not None}
    try:
        csv = CsvConfig.model_validate(options) if options else None
    except ValidationError as exc:
        raise UserError(f"invalid CSV options: {describe_validation_error(exc)}") from None
    result = predict_file(model_uri, input, output, chunk_rows, allow_missing_columns, csv)
    for warning in [*result.warnings, *result.report.lines()]:
        typer.echo(f"warning: {warning}", err=True)
    rate = result.rows / result.seconds if result.seconds > 0 else float("inf")
    typer.echo(f"wrote {result.rows} predictions to {output} ({rate:.0f} rows/s)")


TERMINAL_COLUMNS = 100


def _fit(line: str) -> str:
    """``line`` cut to the terminal width, marked when cut."""
    return line if len(line) <= TERMINAL_COLUMNS else line[: TERMINAL_COLUMNS - 1] + "…"


@models_app.command("list")
@reporting_errors
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this registered model.")] = None,
) -> None:
    """Versions with their aliases, promotion decision and why, and held-out metrics."""
    from mlflow.tracking import MlflowClient

    from ml_model import registry, tracking

    tracking.connect()
    rows = registry.list_versions(MlflowClient(), name)
    if not rows:
        typer.echo("no registered models yet")
        return
    current = None
    for row in rows:
        if row.name != current:
            current = row.name
            typer.echo(_fit(row.name))
        metrics = " ".join(f"{k}={v:.4g}" for k, v in row.metrics.items())
        aliases = ",".join(row.aliases) or "-"
        decision = row.decision or "-"
        typer.echo(
            _fit(f"  v{row.version:<4} {aliases:<10} {decision:<17} {row.created}  {metrics}")
        )
        if row.reason:
            typer.echo(_fit(f"        {row.reason}"))


@app.command()
@reporting_errors
def promote(name: str, version: str) -> None:
    """Make VERSION of model NAME the champion by hand."""
    from mlflow.tracking import MlflowClient

    from ml_model import registry, tracking

    tracking.connect()
    previous = registry.promote(MlflowClient(), name, version)
    replaced = f" (replacing v{previous})" if previous else ""
    typer.echo(f"{name} v{version} is now the champion{replaced}")


@app.command()
@reporting_errors
def rollback(name: str) -> None:
    """Give the champion alias back to the version the current champion replaced."""
    from mlflow.tracking import MlflowClient

    from ml_model import registry, tracking

    tracking.connect()
    old, new = registry.rollback(MlflowClient(), name)
    typer.echo(f"{name}: champion rolled back from v{old} to v{new}")


@app.command()
@reporting_errors
def score(
    model_uri: Annotated[str, typer.Option(help="models:/NAME@ALIAS (pinned once) or NAME/VER.")],
    input: Annotated[
        str, typer.Option("--input", "-i", help="CSV/Parquet file, folder, glob or s3:// URI.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the output.")],
    engine: Annotated[str, typer.Option(help="local (this process) or spark.")] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL: spark://host:7077, local[4] (default local[*])."),
    ] = None,
    key_columns: Annotated[
        str | None,
        typer.Option(help="Comma-separated input columns to keep (default: every column)."),
    ] = None,
) -> None:
    """Score files in batch with one pinned model version; writes Parquet parts, rejected rows
    with their reason under _rejects/, and _manifest.json last."""
    from ml_model.score import score_job

    keys = [k.strip() for k in key_columns.split(",") if k.strip()] if key_columns else None
    result = score_job(model_uri, input, output, engine, spark_master, keys)
    for line in result.report.lines():
        typer.echo(f"warning: {line}", err=True)
    model = result.manifest["model"]
    rate = result.manifest["rows_per_s"]
    typer.echo(
        f"scored {result.rows} rows ({result.rejects} rejected) with {model['name']} "
        f"v{model['version']} into {output} ({rate:.0f} rows/s); MLflow run {result.run_id}"
    )


@app.command()
@reporting_errors
def monitor(
    model: Annotated[
        list[str] | None,
        typer.Option(help="Registered model to watch (repeatable; default: every one)."),
    ] = None,
    window: Annotated[str, typer.Option(help="Traffic to compare: 30m, 24h, 7d.")] = "24h",
    once: Annotated[bool, typer.Option(help="Check once and exit.")] = False,
    every: Annotated[str, typer.Option(help="Time between checks unless --once.")] = "15m",
    min_rows: Annotated[
        int, typer.Option(min=1, help="Rows a version needs in the window to be checked.")
    ] = 100,
    heartbeat: Annotated[
        Path | None, typer.Option(help="File touched after each round (for health checks).")
    ] = None,
) -> None:
    """Compare each served version's traffic with its training reference (drift), score it
    against feedback labels (live metrics), and log one MLflow run per check in the experiment
    monitoring/<model>."""
    from ml_model.monitoring.monitor import parse_window, run_monitor

    try:
        span, pause = parse_window(window), None if once else parse_window(every)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    run_monitor(model or [], span, pause, min_rows, echo=typer.echo, heartbeat=heartbeat)
