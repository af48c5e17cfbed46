"""Load the training table from a file, URL, s3:// URI or SQL query."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pandas as pd

from ml_model.config import DataConfig
from ml_model.errors import UserError
from ml_model.targets import clean_target

logger = logging.getLogger("ml_model")

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# load_data's count of the rows it dropped for a missing target: a key of the table's attrs,
# the profile's field and the run's metric.
ROWS_DROPPED_MISSING_TARGET = "rows_dropped_missing_target"


def file_format(source: str, declared: str | None = None) -> str:
    """``csv`` or ``parquet``: the declared one, else from the extension (after .gz etc.)."""
    if declared:
        return declared
    suffixes = PurePosixPath(urlparse(source).path).suffixes
    for suffix in reversed(suffixes):
        if suffix.lower() in FORMATS:
            return FORMATS[suffix.lower()]
    raise UserError(
        f"cannot tell the format of '{source}' from its name; set data.format to csv or parquet"
    )


def read_table(source: str, declared_format: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path, http(s) URL or s3:// URI."""
    fmt = file_format(source, declared_format)
    try:
        if fmt == "csv":
            return pd.read_csv(source)
        return pd.read_parquet(source)
    except FileNotFoundError:
        raise UserError(f"data file not found: {source}") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read {fmt} data from {source}: {exc}") from exc


def read_query(query: str, sql_url: str) -> pd.DataFrame:
    """Run a SQL query through SQLAlchemy and return the result table."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(sql_url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise UserError(f"invalid data.sql_url: {exc}") from exc
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = getattr(exc, "orig", None) or exc.__cause__ or exc
        raise UserError(f"data.query failed: {str(cause).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()


def load_data(config: DataConfig) -> pd.DataFrame:
    """The full table named by the config, checked for the target column and emptiness.

    The target is cleaned like text features (``clean_target``); rows whose target is then
    missing are dropped, logged, and counted in ``attrs[ROWS_DROPPED_MISSING_TARGET]``.
    """
    if config.query is not None:
        assert config.connection_url is not None  # guaranteed by DataConfig validation
        frame = read_query(config.query, config.connection_url)
        origin = "data.query"
    else:
        assert config.source is not None
        frame = read_table(config.source, config.format)
        origin = config.source
    if config.target not in frame.columns:
        raise UserError(
            f"target column '{config.target}' not in {origin}; columns are {list(frame.columns)}"
        )
    unknown = [
        c
        for c in (*config.drop_columns, *config.numeric_columns, *config.categorical_columns)
        if c not in frame.columns
    ]
    if unknown:
        raise UserError(f"config names columns not in {origin}: {unknown}")
    target = clean_target(frame[config.target])
    missing = target.isna().to_numpy()
    labelled = frame[~missing].assign(**{config.target: target[~missing]})
    if labelled.empty:
        raise UserError(f"{origin} has no rows with a value in target '{config.target}'")
    dropped = int(missing.sum())
    if dropped:
        logger.warning(
            "dropped %d of %d rows (%.1f%%) whose target '%s' is missing",
            dropped,
            len(frame),
            100 * dropped / len(frame),
            config.target,
        )
    labelled = labelled.reset_index(drop=True)
    labelled.attrs[ROWS_DROPPED_MISSING_TARGET] = dropped
    return labelled
