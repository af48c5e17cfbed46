"""The prediction log's store: one table per served model version, with a typed column per
feature from the version's signature, plus the true outcomes sent later (feedback).

PostgreSQL (the stack's ``monitoring`` database, schema ``prediction_log``, see
postgres/initdb/20-monitoring.sh): the API's role may only insert, and creates a version's table
through the database's ``create_version_table`` function; the monitor's role reads, and removes
expired rows through ``purge``. SQLite (the embedded default): the same tables, created
directly.

Columns of a version's table: ``_logged_at``, ``_request_id``, ``_route``, ``_latency_ms``,
``_prediction`` (a number for regression, the class label as text otherwise),
``_probabilities`` (JSON text, classifiers), then one column per feature, named as the feature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

SCHEMA = "prediction_log"
# Rows given column by column: name → one value per row; the numeric features, the latency
# and the time (Unix seconds) as float64 arrays (NaN = missing), every other column as a
# sequence (None = missing; a regression's predictions are numbers).
LogColumns = Mapping[str, Sequence[Any] | np.ndarray]
BASE_COLUMNS = (
    "_logged_at",
    "_request_id",
    "_route",
    "_latency_ms",
    "_prediction",
    "_probabilities",
)
# Signature column types (mlflow.types.DataType names) → the SQL type of the logged column.
SQL_TYPES = {
    "double": "double precision",
    "float": "double precision",
    "long": "bigint",
    "integer": "bigint",
    "boolean": "boolean",
    "string": "text",
}
_SQLALCHEMY_TYPES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "double precision": sa.Float,
    "bigint": sa.BigInteger,
    "boolean": sa.Boolean,
    "text": sa.Text,
    "timestamptz": lambda: sa.DateTime(timezone=True),
}


def store_url(url: str | None, password: str | None, home: Path) -> str:
    """The store's SQLAlchemy URL: ``url`` with ``password`` filled in (escaped), or the
    embedded SQLite file ``home``/monitoring.db when ``url`` is unset. Holds the password:
    never log it."""
    if url is None:
        return f"sqlite:///{(home / 'monitoring.db').resolve()}"
    if password is None:
        return url
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)


def _write_ahead_log(connection: Any, _: Any) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints: the monitor reads while the
    API's writer appends, and a commit costs no sync of its own."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


# COPY's binary format: a header, then per row the number of fields and each field's length
# (-1: NULL) and bytes, then a trailer. Numbers and times go as the server keeps them (no text
# to format here and parse there): a batch of one-row requests took 2 us a row to encode instead
# of 7.5 us as text, mostly spent formatting floats; the numeric columns of all the rows are
# encoded as one array (``_number_fields``).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no flags, no extension
_COPY_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_LENGTH = struct.Struct(">i").pack
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1
_LARGEST_FLOAT_BELOW_2_63 = 2.0**63 - 1024
_POSTGRES_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()  # times count from it


def _text_fields(values: Sequence[Any] | np.ndarray) -> list[bytes]:
    """A text column's ``values`` as COPY binary fields. Text that repeats (routes,
    categories, class labels; a column's values are of one type) is encoded once per distinct
    value: a sixth of the work a value."""
    distinct = set(values)
    if 2 * len(distinct) > len(values):  # mostly distinct (request ids)
        return list(map(_text_or_null, values))
    field = {value: _text_or_null(value) for value in distinct}
    return [field[value] for value in values]


def _text_or_null(value: Any) -> bytes:
    if value is None:
        return _NULL
    encoded = _utf8(value)
    return _LENGTH(len(encoded)) + encoded


def _number_fields(matrix: np.ndarray, kinds: Sequence[sa.types.TypeEngine[Any]]) -> list[bytes]:
    """Each row of ``matrix`` (rows by numeric columns of types ``kinds``, see ``LogColumns``)
    as its COPY binary fields, one piece per row: encoded as one array (a structured dtype laid
    out as the fields are), not value by value. In a row holding a NULL (NaN), whose field is
    shorter, the NULL's field replaces its place."""
    missing = np.isnan(matrix)
    present = np.where(missing, 0.0, matrix)  # the NULLs' places are replaced below
    values = [_binary_values(present[:, column], kind) for column, kind in enumerate(kinds)]
    layout: list[tuple[str, Any]] = []
    for column, column_values in enumerate(values):
        value_type = column_values.dtype.newbyteorder(">")
        layout += [(f"length{column}", ">i4"), (f"value{column}", value_type)]
    block = np.empty(len(matrix), dtype=layout)
    for column, column_values in enumerate(values):
        block[f"length{column}"] = column_values.dtype.itemsize
        block[f"value{column}"] = column_values
    encoded, size = block.tobytes(), block.itemsize
    fields = [encoded[start : start + size] for start in range(0, len(encoded), size)]
    places, start = [], 0  # each field's start and end in a row's piece
    for column_values in values:
        places.append((start, start + 4 + column_values.dtype.itemsize))
        start = places[-1][1]
    for row in np.flatnonzero(missing.any(axis=1)).tolist():
        whole = fields[row]
        fields[row] = b"".join(
            _NULL if missing[row, column] else whole[start:end]
            for column, (start, end) in enumerate(places)
        )
    return fields


def _binary_values(values: np.ndarray, kind: sa.types.TypeEngine[Any]) -> np.ndarray:
    """A numeric column's values as its binary fields hold them (their dtype gives the
    field's type and size): times as microseconds since PostgreSQL's epoch; integers (the
    engine's numbers are floats) rounded, and beyond 64 bits (a "long" feature sent 1e30,
    which the API takes as a number) the nearest bigint: the server refused it, failing every
    row of its batch."""
    if isinstance(kind, sa.Boolean):
        flags: np.ndarray = np.not_equal(values, 0)
        return flags
    if isinstance(kind, sa.DateTime):
        microseconds: np.ndarray = np.rint((values - _POSTGRES_EPOCH) * 1e6)
        return microseconds.astype(np.int64)
    if not isinstance(kind, sa.Integer):
        return values
    rounded: np.ndarray = np.rint(values)
    integers: np.ndarray = np.clip(rounded, _BIGINT_MIN, _LARGEST_FLOAT_BELOW_2_63).astype(np.int64)
    integers[rounded >= 2.0**63] = _BIGINT_MAX
    return integers


def _utf8(value: Any) -> bytes:
    """``value`` as UTF-8 text. A NUL character, which text in PostgreSQL cannot hold, and a
    lone surrogate, which UTF-8 cannot (both accepted by the API: JSON's ``"\\u0000"`` and
    ``"\\ud800"``), are kept as their escapes: either made the whole batch fail."""
    return str(value).replace("\x00", "\\x00").encode("utf-8", "backslashreplace")


def _python_values(values: np.ndarray, kind: sa.types.TypeEngine[Any]) -> list[Any]:
    """A numeric column's values as Python objects: times as datetimes, None where missing."""
    if isinstance(kind, sa.DateTime):
        return [dt.datetime.fromtimestamp(value, dt.UTC) for value in values.tolist()]
    numbers = values.astype(object)
    numbers[np.isnan(values)] = None
    return numbers.tolist()  # type: ignore[no-any-return]


class StoreError(RuntimeError):
    """The store cannot take or give what was asked (unreachable, or refused)."""


@dataclass(frozen=True)
class VersionTable:
    """Where one model version's predictions go: the table's name and its columns' SQL types."""

    name: str
    columns: dict[str, str]  # column → SQL type, base columns first

    @classmethod
    def for_version(
        cls, model: str, version: str, features: Mapping[str, str], regression: bool
    ) -> VersionTable:
        """The table of ``model`` ``version`` whose signature has ``features`` (name → signature
        type); a feature named like a base column is refused."""
        clash = set(features) & set(BASE_COLUMNS)
        if clash:
            raise StoreError(f"features {sorted(clash)} clash with the prediction log's columns")
        unknown = {n: t for n, t in features.items() if t not in SQL_TYPES}
        if unknown:
            raise StoreError(f"feature types the prediction log cannot store: {unknown}")
        slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:32] or "model"
        digest = hashlib.sha256(model.encode()).hexdigest()[:6]
        version_slug = re.sub(r"[^0-9]", "", version)[:10] or "0"
        base = {
            "_logged_at": "timestamptz",
            "_request_id": "text",
            "_route": "text",
            "_latency_ms": "double precision",
            "_prediction": "double precision" if regression else "text",
            "_probabilities": "text",
        }
        return cls(
            name=f"pred_{slug}_{digest}_v{version_slug}",
            columns={**base, **{n: SQL_TYPES[t] for n, t in features.items()}},
        )

    def table(self, metadata: sa.MetaData, schema: str | None) -> sa.Table:
        return sa.Table(
            self.name,
            metadata,
            *(sa.Column(name, _SQLALCHEMY_TYPES[kind]()) for name, kind in self.columns.items()),
            sa.Index(f"{self.name}_time", "_logged_at"),
            schema=schema,
        )


class PredictionStore:
    """A connection pool to the store at ``url`` (SQLAlchemy URL; never logged as is)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._driver_error = self.engine.dialect.loaded_dbapi.Error  # COPY's raw cursor raises it
        if not self.postgres:
            sa.event.listen(self.engine, "connect", _write_ahead_log)
        self.schema = SCHEMA if self.postgres else None
        self.metadata = sa.MetaData()
        self.feedback = sa.Table(
            "feedback",
            self.metadata,
            sa.Column("request_id", sa.Text, nullable=False, index=True),
            sa.Column("label", sa.Text, nullable=False),
            sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
            schema=self.schema,
        )
        self._tables: dict[str, sa.Table] = {}

    def close(self) -> None:
        self.engine.dispose()

    def _run(self, what: str, work: Any) -> Any:
        try:
            with self.engine.begin() as connection:
                return work(connection)
        except (sa.exc.SQLAlchemyError, self._driver_error) as exc:
            raise StoreError(f"{what}: {type(getattr(exc, 'orig', None) or exc).__name__}") from exc

    def _table(self, spec: VersionTable) -> sa.Table:
        if spec.name not in self._tables:
            self._tables[spec.name] = spec.table(self.metadata, self.schema)
        return self._tables[spec.name]

    def _create_sqlite_tables(self, connection: sa.Connection, *tables: sa.Table) -> None:
        """SQLite has no roles: its tables are created directly (PostgreSQL's by its init
        script and ``create_version_table``)."""
        if not self.postgres:
            self.metadata.create_all(connection, tables=[*tables, self.feedback])

    def prepare(self, spec: VersionTable) -> None:
        """Make sure ``spec``'s table exists (the writer's role may create it)."""
        table = self._table(spec)

        def create(connection: sa.Connection) -> None:
            if self.postgres:
                connection.execute(
                    sa.text(
                        f"SELECT {SCHEMA}.create_version_table(:name, CAST(:columns AS jsonb))"
                    ),
                    {"name": spec.name, "columns": json.dumps(spec.columns)},
                )
            self._create_sqlite_tables(connection, table)

        self._run(f"cannot create the prediction table {spec.name}", create)

    def insert(self, spec: VersionTable, columns: LogColumns) -> None:
        """Append rows given column by column (``LogColumns``) to ``spec``'s table
        (``prepare`` it first)."""
        table = self._table(spec)
        write = self._copy if self.postgres else self._execute_many
        self._run(
            f"cannot write to {spec.name}", lambda connection: write(connection, table, columns)
        )

    def _execute_many(
        self, connection: sa.Connection, table: sa.Table, columns: LogColumns
    ) -> None:
        """SQLite: the column types' conversions (timestamps to text) run once per distinct
        value, and the rows go to the driver as tuples: binding each row's parameters through
        SQLAlchemy took two thirds of the writer's time."""
        dialect = self.engine.dialect
        statement = table.insert().compile(dialect=dialect, column_keys=list(columns))
        values: dict[str, Sequence[Any]] = {}
        for name, given in columns.items():
            kind = table.c[name].type
            column = _python_values(given, kind) if isinstance(given, np.ndarray) else given
            convert = kind.dialect_impl(dialect).bind_processor(dialect)
            if isinstance(kind, sa.Text):
                values[name] = [
                    None if value is None else _utf8(value).decode() for value in column
                ]
            elif convert is None:
                values[name] = column
            else:
                converted = {value: convert(value) for value in set(column)}
                values[name] = [converted[value] for value in column]
        rows = list(zip(*(values[name] for name in statement.positiontup or ()), strict=True))
        connection.exec_driver_sql(statement.string, rows)

    def _copy(self, connection: sa.Connection, table: sa.Table, columns: LogColumns) -> None:
        """PostgreSQL: the rows in one binary ``COPY``, five times less work than the batched
        ``INSERT`` SQLAlchemy sends through psycopg2 even as text. The columns that are not
        text (times, latencies, a regression's predictions, numeric features) come first,
        each row's as one piece (``_number_fields``)."""
        numbers = [name for name in columns if not isinstance(table.c[name].type, sa.Text)]
        others = [name for name in columns if name not in numbers]
        fields = [_text_fields(columns[name]) for name in others]
        if numbers:
            matrix = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in numbers])
            fields.insert(0, _number_fields(matrix, [table.c[name].type for name in numbers]))
        per_row = repeat(struct.pack(">h", len(columns)), len(fields[0]))  # the field count
        rows = b"".join(chain.from_iterable(zip(per_row, *fields, strict=True)))
        preparer = self.engine.dialect.identifier_preparer
        names = ", ".join(preparer.quote(name) for name in [*numbers, *others])
        cursor = connection.connection.cursor()
        try:
            cursor.copy_expert(
                f"COPY {preparer.format_table(table)} ({names}) FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(_COPY_HEADER + rows + _COPY_TRAILER),
            )
        finally:
            cursor.close()

    def record_feedback(self, request_id: str, label: str) -> str:
        """Record ``label`` as ``request_id``'s true outcome; the label as stored (see
        ``_utf8``)."""
        stored = _utf8(label).decode()
        row = {"request_id": request_id, "label": stored, "logged_at": dt.datetime.now(dt.UTC)}

        def insert(connection: sa.Connection) -> None:
            self._create_sqlite_tables(connection)
            connection.execute(self.feedback.insert(), [row])

        self._run("cannot record feedback", insert)
        return stored

    def window(self, spec: VersionTable, since: dt.datetime) -> pd.DataFrame:
        """Rows of ``spec``'s table logged at ``since`` or later (none when the version has no
        table yet), with the latest feedback label of each request in column ``_label``
        (missing when none came)."""
        table = self._table(spec)
        ranked = sa.select(
            self.feedback.c.request_id,
            self.feedback.c.label,
            sa.func.row_number()
            .over(
                partition_by=self.feedback.c.request_id,
                order_by=self.feedback.c.logged_at.desc(),
            )
            .label("rank"),
        ).subquery()
        query = (
            sa.select(table, ranked.c.label.label("_label"))
            .outerjoin(
                ranked,
                sa.and_(ranked.c.request_id == table.c._request_id, ranked.c.rank == 1),
            )
            .where(table.c._logged_at >= since)
        )

        def read(connection: sa.Connection) -> pd.DataFrame:
            if not sa.inspect(connection).has_table(spec.name, schema=self.schema):
                return pd.DataFrame(columns=[*spec.columns, "_label"])
            self._create_sqlite_tables(connection)
            return pd.DataFrame(
                connection.execute(query).mappings().all(), columns=[*spec.columns, "_label"]
            )

        frame: pd.DataFrame = self._run(f"cannot read {spec.name}", read)
        return frame

    def purge(self, keep_days: int) -> int:
        """Delete rows logged more than ``keep_days`` days ago; the number removed."""
        if self.postgres:
            query = sa.text(f"SELECT {SCHEMA}.purge(:days)")
            return int(
                self._run(
                    "cannot purge the prediction log",
                    lambda c: c.execute(query, {"days": keep_days}).scalar_one(),
                )
            )
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)

        def purge(connection: sa.Connection) -> int:
            removed = 0
            for name in sa.inspect(connection).get_table_names():
                if name.startswith("pred_"):
                    deleted = connection.execute(
                        sa.text(f'DELETE FROM "{name}" WHERE _logged_at < :cutoff'),
                        {"cutoff": cutoff},
                    )
                    removed += deleted.rowcount
            if sa.inspect(connection).has_table("feedback"):
                connection.execute(self.feedback.delete().where(self.feedback.c.logged_at < cutoff))
            return removed

        return int(self._run("cannot purge the prediction log", purge))
