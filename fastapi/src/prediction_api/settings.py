"""Every setting of the prediction service, read once from the environment.

Each field's ``validation_alias`` is the environment variable that sets it. ``MLFLOW_TRACKING_URI``
is MLflow's own variable: ``ml_model.tracking`` resolves it (unset means the embedded store).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ml_model.config import describe_validation_error

MIN_API_KEY_LENGTH = 16


class SettingsError(Exception):
    """Settings that cannot start the service; the message is one line naming the variable."""


class ApiSettings(BaseSettings):
    """Configuration of the prediction service, one field per environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
    )

    tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server (http://...) or store URI; unset means the "
        "embedded SQLite store under $ML_MODEL_HOME (default ./.mlops).",
    )
    model_name: str = Field(
        min_length=1,
        validation_alias="API_MODEL_NAME",
        description="Registered model to serve, e.g. penguins-body-mass.",
    )
    model_alias: str = Field(
        default="champion",
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        validation_alias="API_MODEL_ALIAS",
        description="Alias followed live: the version it points to is served.",
    )
    poll_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        le=86400,
        validation_alias="API_POLL_INTERVAL_SECONDS",
        description="How often the registry is asked where the alias points.",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        repr=False,
        validation_alias="API_KEYS",
        description="Comma-separated API keys; when set, /predict, /invocations and /admin/* "
        "need `Authorization: Bearer <key>` or `X-API-Key: <key>`. Empty: no auth.",
    )
    max_rows: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        validation_alias="API_MAX_ROWS",
        description="Most rows one request may carry.",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        validation_alias="API_MAX_BODY_BYTES",
        description="Largest request body accepted, in bytes.",
    )
    large_body_mib_per_second: float = Field(
        default=16.0,
        ge=0.0,
        validation_alias="API_LARGE_BODY_MIB_PER_SECOND",
        description="While other requests are in flight or came in the last 0.1 s, bodies "
        "over 1 MiB are read at most this fast in all (MiB/s, per worker), so that uploads "
        "cannot crowd predictions out; with no other traffic, at full speed. 0: never slowed.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        validation_alias="API_HOST",
        description="Interface the server binds to.",
    )
    port: int = Field(
        default=8000, ge=1, le=65535, validation_alias="API_PORT", description="Port to listen on."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias="API_WORKERS",
        description="Uvicorn worker processes; each loads its own copy of the model.",
    )

    monitoring_url: str | None = Field(
        default=None,
        repr=False,
        validation_alias="MONITORING_DB_URL",
        description="Database of the prediction log (SQLAlchemy URL); unset means SQLite at "
        "$ML_MODEL_HOME/monitoring.db (default ./.mlops).",
    )
    monitoring_password: str | None = Field(
        default=None,
        repr=False,
        validation_alias="MONITORING_DB_PASSWORD",
        description="Password for MONITORING_DB_URL's user, kept out of the URL.",
    )
    log_sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        validation_alias="API_LOG_SAMPLE_RATE",
        description="Share of answered requests written to the prediction log (0 turns it off).",
    )
    log_queue_rows: int = Field(
        default=100_000,
        ge=1,
        validation_alias="API_LOG_QUEUE_ROWS",
        description="Rows the prediction log holds in memory while writing; more are dropped "
        "(and counted) rather than slowing requests down.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if len(key) < MIN_API_KEY_LENGTH or any(c.isspace() for c in key):
                raise ValueError(
                    f"each key needs at least {MIN_API_KEY_LENGTH} characters and no spaces "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return keys

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.model_alias}"

    @property
    def monitoring_store_url(self) -> str:
        """The prediction log's URL; holds the password, never log it."""
        from ml_model.monitoring.store import store_url
        from ml_model.settings import load_settings as trainer_settings

        return store_url(self.monitoring_url, self.monitoring_password, trainer_settings().home)


_SECRET_FIELDS = {"API_KEYS", "MONITORING_DB_URL", "MONITORING_DB_PASSWORD"}


def load_settings(**overrides: object) -> ApiSettings:
    """Read the settings from the environment (``overrides`` win, by field name); raise
    SettingsError with a one-line message naming each offending variable."""
    try:
        return ApiSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = describe_validation_error(error, show_input=True, secret=_SECRET_FIELDS)
        raise SettingsError(f"invalid settings: {problems}") from None
