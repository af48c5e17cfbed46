"""A SparkSession for ml-model jobs whose Python workers run this interpreter."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_model.errors import UserError

MISSING = (
    "--engine spark needs the spark extra (pip install 'ml-model[spark]') and a Java 17 runtime"
)


def require_spark() -> None:
    """UserError, in one line, when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UserError(f"{MISSING}: pyspark is not installed") from None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and (Path(java_home) / "bin" / "java").is_file()) and not shutil.which(
        "java"
    ):
        raise UserError(f"{MISSING}: no java on PATH or in JAVA_HOME")


def spark_session(
    master: str, app_name: str = "ml-model", conf: Mapping[str, str] | None = None
) -> Any:
    """The session for ``master`` (``local[N]``, ``spark://host:port``) with ``conf`` applied.
    Executors run Python workers with this very interpreter (``PYSPARK_PYTHON``), so they
    import the same ml_model, engine and libraries as the driver."""
    require_spark()
    # pyspark 4.3 warns that it does not yet fully support pandas 3; the paths ml-model uses
    # (Arrow batches in and out) are covered by its tests, and the warning would only confuse.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        # ml-model reports progress itself; Spark's console bar would interleave with it.
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per closed gateway connection
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
