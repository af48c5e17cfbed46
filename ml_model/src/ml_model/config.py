"""Training configuration: YAML validated into pydantic models, with ``--set`` overrides.

Every model forbids unknown keys, so a typo fails at load with a message naming the key path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ml_model.errors import UserError
from ml_model.links import redacted


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


class DataConfig(Strict):
    """Where the table comes from and which column is the target.

    ``source`` is a CSV or Parquet file: a local path (relative paths are relative to the config
    file), an http(s) URL or an s3:// URI. Alternatively ``query`` runs SQL against a database:
    ``sql_url`` (a SQLAlchemy URL) or ``sql_url_env``, the name of an environment variable that
    holds that URL, read when the config loads and never written anywhere. The run records
    ``sql_url`` only with its password replaced by ``***`` (``links.redacted``); use
    ``connection_url`` to connect and keep the password itself out of files with
    ``sql_url_env``.
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

    @model_validator(mode="after")
    def _indicator_needs_imputation(self) -> FeaturesConfig:
        if self.missing_indicator and self.numeric_imputation == "none":
            raise ValueError(
                "missing_indicator needs numeric_imputation (the imputer adds the indicators); "
                "with none, XGBoost sees the missing values themselves"
            )
        return self


class ModelConfig(Strict):
    """XGBoost estimator settings; ``params`` pass straight through to XGBoost."""

    device: Literal["cpu", "cuda"] = "cpu"
    params: dict[str, Any] = Field(default_factory=dict)
    early_stopping_rounds: int | None = Field(default=None, gt=0)

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


class TrainConfig(Strict):
    data: DataConfig
    task: Task | None = Field(default=None, description="Inferred from the target when omitted.")
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MlflowConfig
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

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
        raw = yaml.safe_load(text)
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


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key.path=value, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: value is not valid YAML: {exc}") from exc
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
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read config {path}: {exc}") from exc
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
