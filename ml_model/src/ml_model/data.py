"""Load the training table from a file, URL, s3:// URI or SQL query.

CSV sources are read with the config's ``data.csv`` options; a separator left unset is sniffed
from the file's first lines (``sniff_sep``), and the table records the one it was read with.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import fsspec  # type: ignore[import-untyped]
import pandas as pd

from ml_model.config import CsvConfig, DataConfig
from ml_model.errors import UserError
from ml_model.targets import clean_target

logger = logging.getLogger("ml_model")

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# What load_data records about how it read the table, as keys of the table's attrs (the first
# is also the profile's field and the run's metric): rows dropped for a missing target, the
# separator a CSV source was read with and its origin (SEP_ORIGINS), and the seconds reading
# took.
ROWS_DROPPED_MISSING_TARGET = "rows_dropped_missing_target"
CSV_SEP = "csv_sep"
CSV_SEP_ORIGIN = "csv_sep_origin"
# Where a separator comes from: the options (data.csv.sep, --sep), the file, or the default
# when sniffing finds none; each with the words messages use.
SEP_ORIGINS = {"given": "as given", "sniffed": "sniffed", "default": "the default, none sniffed"}
LOAD_SECONDS = "load_seconds"
# Separators sniff_sep chooses from, in the order it prefers them, and how much it reads:
# csv.Sniffer's quote-finding regex takes quadratic time on crafted text (64 KiB of `, "x`
# took 19 s here, 8 KiB 0.2 s), and a few KiB of lines tell the separator.
SEPARATORS = ",;\t|"
SNIFF_BYTES = 8 * 1024


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


def sniff_sep(source: str, encoding: str) -> str | None:
    """The column separator of the CSV at ``source`` (a local path, URL or s3:// URI,
    compressed or not), guessed by ``csv.Sniffer`` among SEPARATORS from the complete lines in
    its first SNIFF_BYTES; None when none of them splits those lines consistently (a file of
    one column, or an unusual separator). Raises OSError or ValueError when unreadable."""
    with fsspec.open(source, "rb", compression="infer") as handle:
        sample = handle.read(SNIFF_BYTES)
    text = sample.decode(encoding, errors="replace")
    if len(sample) == SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # a cut line would look like a shorter row
    try:
        return csv.Sniffer().sniff(text, delimiters=SEPARATORS).delimiter
    except csv.Error:
        return None


def csv_options(source: str, options: CsvConfig) -> tuple[dict[str, Any], str]:
    """``pandas.read_csv`` keyword arguments for ``options`` (the separator sniffed when
    unset, ``,`` when sniffing finds none), and the separator's origin (a SEP_ORIGINS key)."""
    sep, origin = options.sep, "given"
    if sep is None:
        sep, origin = sniff_sep(source, options.encoding), "sniffed"
    if sep is None:
        sep, origin = ",", "default"
    kwargs = {
        "sep": sep,
        "decimal": options.decimal,
        "encoding": options.encoding,
        "na_values": options.na_values,
    }
    return kwargs, origin


def read_table(source: str, declared_format: str | None, options: CsvConfig) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path, http(s) URL or s3:// URI; a CSV one
    records its separator in ``attrs[CSV_SEP]`` and its origin in ``attrs[CSV_SEP_ORIGIN]``."""
    fmt = file_format(source, declared_format)
    try:
        if fmt == "parquet":
            return pd.read_parquet(source)
        kwargs, origin = csv_options(source, options)
        frame: pd.DataFrame = pd.read_csv(source, **kwargs)
    except FileNotFoundError:
        raise UserError(f"data file not found: {source}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{source} is not {options.encoding} text ({exc.reason} at byte {exc.start}); "
            "set data.csv.encoding to the file's encoding"
        ) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read {fmt} data from {source}: {exc}") from exc
    frame.attrs.update({CSV_SEP: kwargs["sep"], CSV_SEP_ORIGIN: origin})
    hint = "" if origin == "given" else "; set data.csv.sep to choose"
    logger.info(
        "read %s with separator %r (%s%s)", source, kwargs["sep"], SEP_ORIGINS[origin], hint
    )
    return frame


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
    """The full table named by the config, checked for its columns (``check_columns``) and
    emptiness.

    The target is cleaned like text features (``clean_target``); rows whose target is then
    missing are dropped, logged, and counted in ``attrs[ROWS_DROPPED_MISSING_TARGET]``. The
    attrs also hold the seconds it took (``LOAD_SECONDS``) and, for a CSV source, its separator
    (``CSV_SEP``, ``CSV_SEP_ORIGIN``).
    """
    started = time.perf_counter()
    if config.query is not None:
        assert config.connection_url is not None  # guaranteed by DataConfig validation
        frame = read_query(config.query, config.connection_url)
        origin = "data.query"
    else:
        assert config.source is not None
        if "csv" in config.model_fields_set and file_format(config.source, config.format) != "csv":
            raise UserError(f"data.csv only applies to CSV sources, not to {config.source}")
        frame = read_table(config.source, config.format, config.csv)
        origin = config.source
    check_columns(config, frame, origin)
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
    labelled.attrs[LOAD_SECONDS] = round(time.perf_counter() - started, 3)
    return labelled


def check_columns(config: DataConfig, frame: pd.DataFrame, origin: str) -> None:
    """Refuse a table that lacks the target or a column the config names, naming them; a CSV
    read as one column while the config names several is blamed on its separator."""
    named = [
        config.target,
        *config.drop_columns,
        *config.numeric_columns,
        *config.categorical_columns,
    ]
    sep = frame.attrs.get(CSV_SEP)
    read_with = ""
    if sep is not None:
        read_with = f" (read with separator {sep!r}, {SEP_ORIGINS[frame.attrs[CSV_SEP_ORIGIN]]})"
        if frame.shape[1] == 1 and len(set(named)) > 1:
            header = str(frame.columns[0])
            header = header if len(header) <= 80 else header[:79] + "…"
            raise UserError(
                f"{origin} has one column{read_with} but the config names {len(set(named))}; "
                f"set data.csv.sep to the file's separator (its header: {header!r})"
            )
    if config.target not in frame.columns:
        raise UserError(
            f"target column '{config.target}' not in {origin}{read_with}; "
            f"columns are {list(frame.columns)}"
        )
    unknown = [c for c in named[1:] if c not in frame.columns]
    if unknown:
        raise UserError(f"config names columns not in {origin}{read_with}: {unknown}")
