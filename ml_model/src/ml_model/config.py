"""Training configuration: YAML validated into pydantic models, with ``--set`` overrides.

Every model forbids unknown keys, so a typo fails at load with a message naming the key path.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ml_model.errors import UserError
from ml_model.links import redacted


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


class CsvConfig(Strict):
    """How a CSV source is read: ``pandas.read_csv``'s options of the same names.

    ``sep`` is one character; when omitted it is sniffed from the file's first 8 KiB among
    ``,`` ``;`` tab and ``|`` (``,`` when none splits the lines consistently), and the run
    records the separator it read with. ``na_values`` are cell texts read as missing besides
    pandas' own markers (empty, ``NA``, ``NaN``, ``null``, ...).
    """

    sep: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="Column separator, one character; sniffed from the file when omitted.",
    )
    decimal: Literal[".", ","] = "."
    encoding: str = Field(default="utf-8", min_length=1)
    na_values: list[str] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _readable(self) -> CsvConfig:
        if self.sep is not None and self.sep in '"\r\n':
            raise ValueError(f"sep cannot be {self.sep!r} (a quote or line break)")
        if self.sep == self.decimal:
            raise ValueError(f"sep and decimal are both {self.sep!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding '{self.encoding}'") from None
        return self


class DataConfig(Strict):
    """Where the table comes from and which column is the target.

    ``source`` is a CSV or Parquet file: a local path (relative paths are relative to the config
    file), an http(s) URL or an s3:// URI. Alternatively ``query`` runs SQL against a database:
    ``sql_url`` (a SQLAlchemy URL) or ``sql_url_env``, the name of an environment variable that
    holds that URL, read when the config loads and never written anywhere. The run records
    ``sql_url`` only with its password replaced by ``***`` (``links.redacted``); use
    ``connection_url`` to connect and keep the password itself out of files with
    ``sql_url_env``. ``csv`` says how a CSV source is read (``CsvConfig``).
    """

    source: str | None = None
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="File format; inferred from the source's extension if omitted."
    )
    query: str | None = None
    sql_url: str | None = None
    sql_url_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the SQLAlchemy URL (instead of sql_url).",
    )
    csv: CsvConfig = Field(default_factory=CsvConfig)
    target: str = Field(min_length=1)
    drop_columns: list[str] = Field(default_factory=list)
    numeric_columns: list[str] = Field(default_factory=list)
    categorical_columns: list[str] = Field(default_factory=list)
    # the URL read from sql_url_env: a private attribute, so no dump, param or digest holds it
    _env_url: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.source is None) == (self.query is None):
            raise ValueError("give exactly one of 'source' (a file or URL) or 'query' (SQL)")
        if self.sql_url is not None and self.sql_url_env is not None:
            raise ValueError("give 'sql_url' or 'sql_url_env', not both")
        if self.query is not None and not self.sql_url and self.sql_url_env is None:
            raise ValueError(
                "'query' needs 'sql_url', a SQLAlchemy database URL, or 'sql_url_env', "
                "the environment variable that holds it"
            )
        for key in ("sql_url", "sql_url_env"):
            if self.source is not None and getattr(self, key) is not None:
                raise ValueError(f"'{key}' only goes with 'query'")
        if "csv" in self.model_fields_set and (self.query is not None or self.format == "parquet"):
            raise ValueError("'csv' only goes with a CSV source")
        if self.sql_url_env is not None:
            self._env_url = os.environ.get(self.sql_url_env) or None
            if self._env_url is None:
                raise ValueError(
                    f"environment variable {self.sql_url_env} (data.sql_url_env) is not set"
                )
        overlap = set(self.numeric_columns) & set(self.categorical_columns)
        if overlap:
            raise ValueError(f"columns both numeric and categorical: {sorted(overlap)}")
        if self.target in self.drop_columns:
            raise ValueError(f"the target '{self.target}' is also in drop_columns")
        return self

    @property
    def connection_url(self) -> str | None:
        """The database URL to connect with, from ``sql_url`` or ``sql_url_env``; it may hold a
        password, so never log or store it (``links.redacted`` gives the form to record)."""
        return self.sql_url if self.sql_url is not None else self._env_url


class FeaturesConfig(Strict):
    """How the ColumnTransformer treats numeric and categorical columns."""

    scaling: Literal["standardize", "normalize"] = Field(
        default="standardize",
        description="standardize: zero mean, unit variance; normalize: min-max to [0, 1].",
    )
    numeric_imputation: Literal["mean", "median", "most_frequent", "none"] = Field(
        default="median",
        description="none leaves missing numbers missing, for XGBoost's own handling.",
    )
    missing_indicator: bool = Field(
        default=False,
        description="Add a 0/1 column per numeric feature that had missing values in training.",
    )
    categorical_imputation: Literal["most_frequent", "constant"] = Field(
        default="constant", description="constant fills missing categories with 'missing'."
    )
    # 100 one-hot columns per categorical column at most: far above the levels of an ordinary
    # categorical column (the bundled tables have at most 3), so their encoding is unchanged,
    # while a forgotten identifier or free-text column costs at most 800 bytes a row (float64)
    # instead of 8 bytes per distinct value.
    max_categories: int | None = Field(
        default=100,
        ge=2,
        strict=True,
        description="One-hot columns per categorical column at most, the 'infrequent' column "
        "included: the most frequent categories keep their own; null: no cap.",
    )
    min_frequency: int | float | None = Field(
        default=None,
        description="Categories seen fewer times than this count (an integer), or in a smaller "
        "share of the training rows (0 < share < 1), share one 'infrequent' column.",
    )

    @field_validator("min_frequency", mode="before")
    @classmethod
    def _count_or_share(cls, value: Any) -> Any:
        counts = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        share = isinstance(value, float) and 0.0 < value < 1.0
        if value is not None and not (counts or share):
            raise ValueError(
                "give a count (an integer, at least 1) or a share of the training rows "
                "(a number between 0 and 1), or null"
            )
        return value

    @model_validator(mode="after")
    def _indicator_needs_imputation(self) -> FeaturesConfig:
        if self.missing_indicator and self.numeric_imputation == "none":
            raise ValueError(
                "missing_indicator needs numeric_imputation (the imputer adds the indicators); "
                "with none, XGBoost sees the missing values themselves"
            )
        return self


# The most items a list in model.params may hold: XGBoost's list parameters (eval_metric,
# monotone_constraints) are short; longer or nested values go in XGBoost's string forms
# ("(1,0,-1)", "[[0, 1], [2, 3]]").
MAX_PARAM_ITEMS = 256
ParamScalar = str | int | float | bool | None


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class ModelConfig(Strict):
    """XGBoost estimator settings; ``params`` pass straight through to XGBoost. Each params
    value is a scalar (number, string, boolean, null) or a list of at most MAX_PARAM_ITEMS
    scalars."""

    device: Literal["cpu", "cuda"] = "cpu"
    params: dict[str, ParamScalar | list[ParamScalar]] = Field(default_factory=dict)
    early_stopping_rounds: int | None = Field(default=None, gt=0)

    @field_validator("params", mode="before")
    @classmethod
    def _scalar_params(cls, params: object) -> object:
        # before pydantic's own checks: one message per key instead of one per union member
        for key, value in params.items() if isinstance(params, dict) else ():
            if isinstance(value, list) and len(value) > MAX_PARAM_ITEMS:
                raise ValueError(
                    f"'{key}' is a list of {len(value)} items, more than {MAX_PARAM_ITEMS}"
                )
            if not (_is_scalar(value) or (isinstance(value, list) and all(map(_is_scalar, value)))):
                raise ValueError(
                    f"'{key}' must be a number, string, boolean or null, or a list of them, "
                    f"not {type(value).__name__} (nested values go in XGBoost's string form)"
                )
        return params

    @model_validator(mode="after")
    def _no_reserved_params(self) -> ModelConfig:
        reserved = {"device", "early_stopping_rounds", "callbacks"} & set(self.params)
        if reserved:
            raise ValueError(f"set {sorted(reserved)} with the model's own keys, not in params")
        return self


class TrainingConfig(Strict):
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    validation_size: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Share of the training part held out for early stopping (only used then).",
    )
    seed: int = 42
    cv_folds: int | None = Field(default=None, ge=2, description="k for optional k-fold CV.")


class MlflowConfig(Strict):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)


Direction = Literal["minimize", "maximize"]
METRIC_DIRECTIONS: dict[str, Direction] = {
    "rmse": "minimize",
    "mae": "minimize",
    "r2": "maximize",
    "accuracy": "maximize",
    "f1": "maximize",
    "roc_auc": "maximize",
    "log_loss": "minimize",
}
REGRESSION_METRICS = ("rmse", "mae", "r2")
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")


class PromotionConfig(Strict):
    """When a new version takes the ``champion`` alias: it must beat the champion's score on the
    same held-out data by at least ``min_improvement`` (absolute) in ``direction``. With no
    champion yet, it must beat the trivial baseline (mean predictor or class priors) on those
    rows, unless ``require_beat_baseline`` is false."""

    metric: str | None = Field(
        default=None, description="Defaults to rmse (regression) or log_loss (classification)."
    )
    direction: Direction | None = Field(
        default=None, description="Defaults to the metric's natural direction."
    )
    min_improvement: float = Field(default=0.0, ge=0.0)
    require_beat_baseline: bool = Field(
        default=True,
        description="A first version becomes champion only when it beats the trivial baseline.",
    )

    @model_validator(mode="after")
    def _known_metric(self) -> PromotionConfig:
        if self.metric is not None and self.metric not in METRIC_DIRECTIONS:
            raise ValueError(
                f"unknown metric '{self.metric}'; choose one of {sorted(METRIC_DIRECTIONS)}"
            )
        return self


# Spark memory sizes as spark.executor.memory takes them: a number and a unit (k, m, g, t).
SPARK_MEMORY = r"^[1-9][0-9]*[kKmMgGtT]$"
# Spark masters: local, local[N], local[*], spark://host:port[,host:port...], yarn, k8s://...
SPARK_MASTER = (
    r"^(local(\[([1-9][0-9]*|\*)\])?|spark://[^\s/]+:[0-9]+(,[^\s/]+:[0-9]+)*|yarn|k8s://\S+)$"
)


class SparkEngineConfig(Strict):
    """Where and how ``engine.kind: spark`` trains (``ml_model.spark.train``)."""

    master: str = Field(
        default="local[*]",
        pattern=SPARK_MASTER,
        description="local, local[N], local[*], spark://host:port, yarn or k8s://...",
    )
    num_workers: int = Field(
        default=2,
        ge=1,
        le=4096,
        description="XGBoost workers, one Spark task slot each: the run checks before it "
        "starts that the cluster has this many free slots (a barrier stage waits for all).",
    )
    executor_memory: str | None = Field(
        default=None, pattern=SPARK_MEMORY, description="spark.executor.memory, e.g. 4g."
    )
    preprocessing_sample_rows: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Training rows the driver fits the column types on; category lists and "
        "statistics come from every training row.",
    )
    split_key: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Columns whose values decide a row's side of the held-out split (rows "
        "sharing them stay together, e.g. one customer's rows); empty: the whole row.",
    )
    conf: dict[str, str] = Field(
        default_factory=dict, description="Further spark.* settings, passed through."
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _spark_settings(cls, conf: object) -> object:
        reserved = {"spark.master": "master", "spark.executor.memory": "executor_memory"}
        for key, value in conf.items() if isinstance(conf, dict) else ():
            if not isinstance(key, str) or not key.startswith("spark."):
                raise ValueError(f"'{key}' is not a Spark setting (they start with 'spark.')")
            if key in reserved:
                raise ValueError(f"set '{key}' with engine.spark.{reserved[key]}, not in conf")
            if isinstance(value, dict | list) or value is None:
                raise ValueError(f"'{key}' must be a string, number or boolean")
        if isinstance(conf, dict):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in conf.items()}
        return conf


class EngineConfig(Strict):
    """Where the run trains: ``local`` (this process, pandas and XGBoost) or ``spark`` (a Spark
    cluster: distributed read, split, transform and XGBoost fit; the same registered model)."""

    kind: Literal["local", "spark"] = "local"
    spark: SparkEngineConfig = Field(default_factory=SparkEngineConfig)

    @model_validator(mode="after")
    def _spark_block_needs_spark(self) -> EngineConfig:
        if self.kind == "local" and "spark" in self.model_fields_set:
            raise ValueError("'spark' settings only apply with kind: spark")
        return self


def _engine_problem(config: TrainConfig) -> str | None:
    """What ``engine.kind: spark`` cannot do with the rest of ``config``, or None."""
    if config.engine.kind != "spark":
        return None
    if config.data.query is not None:
        return "engine.kind spark reads files (Parquet or CSV); data.query needs kind: local"
    if config.training.cv_folds:
        return "training.cv_folds is not supported with engine.kind spark; set it to null"
    return None


class TrainConfig(Strict):
    data: DataConfig
    task: Task | None = Field(default=None, description="Inferred from the target when omitted.")
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MlflowConfig
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _engine_fits(self) -> TrainConfig:
        problem = _engine_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _metric_fits_task(self) -> TrainConfig:
        metric = self.promotion.metric
        if metric is None or self.task is None:
            return self
        allowed = REGRESSION_METRICS if self.task is Task.REGRESSION else CLASSIFICATION_METRICS
        if metric not in allowed:
            raise ValueError(
                f"promotion.metric '{metric}' does not apply to a {self.task} task; "
                f"choose one of {list(allowed)}"
            )
        return self

    def public_dump(self) -> dict[str, Any]:
        """The resolved configuration as JSON-ready data, safe to record: passwords in
        ``data.sql_url`` and ``data.source`` replaced by ``***`` (the URL from ``sql_url_env``
        is never in it)."""
        dumped = self.model_dump(mode="json")
        for key in ("sql_url", "source"):
            if dumped["data"][key] is not None:
                dumped["data"][key] = redacted(dumped["data"][key])
        return dumped

    def digest(self) -> str:
        """Stable short hash of the resolved configuration (a database password is no part
        of it: rotating one keeps the digest)."""
        canonical = json.dumps(self.public_dump(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _url_secrets(url: str) -> set[str]:
    """The strings of ``url`` that give its password away (the whole URL when it cannot be
    parsed); empty when it holds none."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return {url}
    query_password = parsed.query.get("password")
    passwords = [parsed.password, *([query_password] if isinstance(query_password, str) else [])]
    return {
        form
        for password in passwords
        if password
        for form in (password, quote(password, safe=""), quote_plus(password))
    }


def public_config_text(text: str) -> str | None:
    """A config file's text safe to record, or None when it holds no database password (record
    the file as it is). The URL in ``data.sql_url`` is redacted where it appears verbatim,
    keeping comments and layout; when its password still shows elsewhere (a comment, an escaped
    string), the file is rewritten from its parsed content instead, without comments."""
    try:
        raw = _parse_yaml(text)
    except yaml.YAMLError:
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("sql_url"), str):
        return None
    url = data["sql_url"]
    if not _url_secrets(url):
        return None
    public = text.replace(url, redacted(url))
    if not any(secret in public for secret in _url_secrets(url)):
        return public
    rewritten = {**raw, "data": {**data, "sql_url": redacted(url)}}
    note = "# rewritten without its comments to remove a database password\n"
    return note + yaml.safe_dump(rewritten, sort_keys=False)


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader refusing aliases (``*name``): a config needs none, and a few hundred
    bytes of nested aliases expand to billions of nodes (a "billion laughs" file)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            problem = f"YAML aliases such as *{event.anchor} are not allowed"
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        return super().compose_node(parent, index)


def _parse_yaml(text: str) -> Any:
    """``text`` parsed like ``yaml.safe_load``, except that an alias raises yaml.YAMLError
    naming its line, before anything is expanded."""
    return yaml.load(text, Loader=_NoAliasLoader)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line, its problem and where (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key.path=value, got '{item}'")
    try:
        value = _parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: value is not valid YAML: {_yaml_problem(exc)}") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` items (value parsed as YAML) into a nested dict; returns the dict."""
    for item in overrides:
        path, value = _parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {item}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def describe_validation_error(
    error: ValidationError, *, show_input: bool = False, secret: Collection[str] = ()
) -> str:
    """Each problem as ``where: message`` (``where must be set`` when missing; a bare message
    when it concerns the whole model), joined by ``; `` on one line. With ``show_input`` the
    offending value follows as ``(got ...)``, except for the names in ``secret``."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "missing":
            problems.append(f"{where} must be set")
            continue
        message = (
            "unknown key"
            if item["type"] == "extra_forbidden"
            else item["msg"].removeprefix("Value error, ")
        )
        if not where:
            problems.append(message)
        elif show_input and where not in secret:
            problems.append(f"{where}: {message} (got {item['input']!r})")
        else:
            problems.append(f"{where}: {message}")
    return "; ".join(problems)


def load_config(path: Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override and validate a YAML config. Relative local data paths are resolved
    against the config file's folder. Raises UserError naming each bad key."""
    try:
        raw = _parse_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"cannot read config {path}: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides or [])
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"invalid config {path}: {describe_validation_error(exc)}") from None
    source = config.data.source
    if source is not None and "://" not in source and not Path(source).is_absolute():
        resolved = str((path.parent / source).resolve())
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"source": resolved})}
        )
    return config


def flatten(config: TrainConfig) -> dict[str, str]:
    """``section.key`` → value strings, for MLflow params (from ``public_dump``)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list | dict) else str(value)

    walk("", config.public_dump())
    return flat
