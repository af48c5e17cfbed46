"""Training configuration: YAML validated into pydantic models, with ``--set`` overrides.

Every model forbids unknown keys, so a typo fails at load with a message naming the key path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ml_model.errors import UserError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


class DataConfig(Strict):
    """Where the table comes from and which column is the target.

    ``source`` is a CSV or Parquet file: a local path (relative paths are relative to the config
    file), an http(s) URL or an s3:// URI. Alternatively ``query`` runs SQL against ``sql_url``
    (a SQLAlchemy URL).
    """

    source: str | None = None
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="File format; inferred from the source's extension if omitted."
    )
    query: str | None = None
    sql_url: str | None = None
    target: str = Field(min_length=1)
    drop_columns: list[str] = Field(default_factory=list)
    numeric_columns: list[str] = Field(default_factory=list)
    categorical_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.source is None) == (self.query is None):
            raise ValueError("give exactly one of 'source' (a file or URL) or 'query' (SQL)")
        if self.query is not None and not self.sql_url:
            raise ValueError("'query' needs 'sql_url', a SQLAlchemy database URL")
        if self.source is not None and self.sql_url is not None:
            raise ValueError("'sql_url' only goes with 'query'")
        overlap = set(self.numeric_columns) & set(self.categorical_columns)
        if overlap:
            raise ValueError(f"columns both numeric and categorical: {sorted(overlap)}")
        if self.target in self.drop_columns:
            raise ValueError(f"the target '{self.target}' is also in drop_columns")
        return self


class FeaturesConfig(Strict):
    """How the ColumnTransformer treats numeric and categorical columns."""

    scaling: Literal["standardize", "normalize"] = Field(
        default="standardize",
        description="standardize: zero mean, unit variance; normalize: min-max to [0, 1].",
    )
    numeric_imputation: Literal["mean", "median", "most_frequent"] = "median"
    categorical_imputation: Literal["most_frequent", "constant"] = Field(
        default="constant", description="constant fills missing categories with 'missing'."
    )


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

    def digest(self) -> str:
        """Stable short hash of the resolved configuration."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
    """``section.key`` → value strings, for MLflow params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list | dict) else str(value)

    walk("", config.model_dump(mode="json"))
    return flat
