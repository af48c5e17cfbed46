"""What a batch-scoring job reads: a file, a folder, a glob or an ``s3://`` location, listed
once (on the driver) into units of work that any process can read on its own.

Files are CSV or Parquet by extension; in a folder, names starting with ``_`` or ``.`` (Spark's
``_SUCCESS``, hidden temporary files) and files of other formats are skipped. S3 goes through
s3fs (credentials from the usual AWS variables, the endpoint from ``AWS_ENDPOINT_URL``), so
Spark executors read it the same way as a local process, without Hadoop's S3 connector.
A Parquet file is split at row-group boundaries into units of about ``UNIT_ROWS`` rows, so one
large file still spreads over many tasks; a CSV file is one unit.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml_model.config import CsvConfig
from ml_model.data import FORMATS, csv_options, file_format
from ml_model.errors import UserError

UNIT_ROWS = 250_000
BATCH_ROWS = 50_000  # rows read (and scored) at a time: memory stays bounded by it


@dataclass(frozen=True)
class InputFile:
    path: str  # a local path or s3://bucket/key
    size: int
    version: str  # modification time or ETag: what the input digest covers besides path and size


@dataclass(frozen=True)
class Unit:
    """Rows of one file: Parquet row groups ``[first, stop)``; a CSV file whole (0, 0)."""

    index: int
    path: str
    first: int = 0
    stop: int = 0


def _s3() -> Any:
    import s3fs  # type: ignore[import-untyped]

    return s3fs.S3FileSystem(endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _hidden(path: str, root: str) -> bool:
    relative = PurePosixPath(path).relative_to(PurePosixPath(root)) if path != root else None
    return relative is not None and any(p.startswith(("_", ".")) for p in relative.parts)


def _known(path: str) -> bool:
    return any(s.lower() in FORMATS for s in PurePosixPath(path).suffixes)


def list_inputs(spec: str) -> list[InputFile]:
    """The CSV and Parquet files ``spec`` names, in name order; UserError when there are none."""
    files = _list_s3(spec) if spec.startswith("s3://") else _list_local(spec)
    files = [f for f in files if _known(f.path)]
    if not files:
        raise UserError(f"no CSV or Parquet files found at {spec}")
    return sorted(files, key=lambda f: f.path)


def _list_local(spec: str) -> list[InputFile]:
    if glob.has_magic(spec):
        paths = [Path(p) for p in glob.glob(spec)]  # noqa: PTH207 - absolute patterns too
    elif Path(spec).is_dir():
        root = str(Path(spec))
        paths = [p for p in Path(spec).rglob("*") if not _hidden(str(p), root)]
    elif Path(spec).is_file():
        paths = [Path(spec)]
    else:
        raise UserError(f"input not found: {spec}")
    found = []
    for path in paths:
        if path.is_file():
            stat = path.stat()
            found.append(InputFile(str(path.resolve()), stat.st_size, str(stat.st_mtime_ns)))
    return found


def _list_s3(spec: str) -> list[InputFile]:
    fs = _s3()
    root = spec.removeprefix("s3://").rstrip("/")
    try:
        if glob.has_magic(spec):
            infos = fs.glob(root, detail=True)
        elif fs.isdir(root):
            infos = {k: v for k, v in fs.find(root, detail=True).items() if not _hidden(k, root)}
        else:
            infos = {root: fs.info(root)}
    except FileNotFoundError:
        raise UserError(f"input not found: {spec}") from None
    except (OSError, ValueError) as exc:  # botocore errors arrive as OSError subclasses
        raise UserError(f"cannot list {spec}: {exc}") from None
    return [
        InputFile(f"s3://{key}", int(info.get("size", 0)), str(info.get("ETag", "")))
        for key, info in infos.items()
        if info.get("type") == "file"
    ]


def digest(files: list[InputFile]) -> str:
    """A digest of the listing (paths, sizes, modification times or ETags): it changes when any
    file is added, removed or rewritten, without reading the data."""
    hasher = hashlib.sha256()
    for f in files:
        hasher.update(f"{f.path}\0{f.size}\0{f.version}\n".encode())
    return hasher.hexdigest()


@contextmanager
def opened(path: str) -> Iterator[IO[bytes]]:
    """A binary file object for a local path or s3:// URI."""
    try:
        with _s3().open(path, "rb") if path.startswith("s3://") else Path(path).open("rb") as f:
            yield f
    except FileNotFoundError:
        raise UserError(f"input file not found: {path}") from None


def units(files: list[InputFile], rows: int = UNIT_ROWS) -> list[Unit]:
    """The files split into units of work (reads each Parquet footer)."""
    result: list[Unit] = []
    for f in files:
        if file_format(f.path) == "csv":
            result.append(Unit(len(result), f.path))
            continue
        with opened(f.path) as handle:
            metadata = _parquet(handle, f.path).metadata
        first, count = 0, 0
        for group in range(metadata.num_row_groups):
            count += metadata.row_group(group).num_rows
            if count >= rows or group == metadata.num_row_groups - 1:
                result.append(Unit(len(result), f.path, first, group + 1))
                first, count = group + 1, 0
        if metadata.num_row_groups == 0:
            result.append(Unit(len(result), f.path))
    return result


def _parquet(handle: IO[bytes], path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(handle)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot read Parquet input {path}: {exc}") from None


def schema(path: str, csv: dict[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of a file: Parquet's own; CSV columns as strings (cells are text),
    the header read with ``csv`` (``pandas.read_csv`` options; default ``ml-model predict``'s,
    the separator sniffed)."""
    with opened(path) as handle:
        if file_format(path) == "parquet":
            return _parquet(handle, path).schema_arrow
        header = pd.read_csv(handle, dtype=str, nrows=0, **(csv or _csv(path)))
    return pa.schema([pa.field(str(name), pa.string()) for name in header.columns])


def _csv(path: str) -> dict[str, Any]:
    """``ml-model predict``'s default CSV options for ``path`` (its separator sniffed)."""
    options, _ = csv_options(path, CsvConfig())
    return options


def batches(
    unit: Unit, rows: int = BATCH_ROWS, csv: dict[str, Any] | None = None
) -> Iterator[pa.RecordBatch]:
    """The unit's rows in record batches of at most ``rows`` rows. CSV is read with ``csv``
    (``pandas.read_csv`` options; default ``ml-model predict``'s, the separator sniffed):
    cells as text (empty cells and markers such as ``NA`` as missing), except that with a
    decimal comma pandas parses the numbers (text cannot say which commas are decimal)."""
    options = csv or _csv(unit.path)
    text = options.get("decimal", ".") == "."
    with opened(unit.path) as handle:
        try:
            if file_format(unit.path) == "parquet":
                groups = range(unit.first, unit.stop) if unit.stop else None
                yield from _parquet(handle, unit.path).iter_batches(rows, row_groups=groups)
            else:
                with pd.read_csv(
                    handle, dtype=str if text else None, chunksize=rows, **options
                ) as reader:
                    for chunk in reader:
                        yield pa.RecordBatch.from_pandas(chunk, preserve_index=False)
        except (pa.ArrowException, ValueError, pd.errors.ParserError) as exc:
            raise UserError(f"cannot read {unit.path}: {exc}") from None
