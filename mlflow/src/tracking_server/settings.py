"""Every setting of the tracking server, read once from the environment.

Each field's ``validation_alias`` is the environment variable that sets it. Where MLflow or boto3
already read a variable (``MLFLOW_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``MLFLOW_HOST``, ...)
the same name is used, so one name carries one fact through the whole stack.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tracking_server.errors import SettingsError

# S3 bucket naming rules: 3-63 characters of lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; the image ships psycopg2, the
# driver MLflow is tested with, so URIs without an explicit driver are pinned to it.
_POSTGRES_DRIVER = "postgresql+psycopg2"


class TrackingServerSettings(BaseSettings):
    """Configuration of the tracking server container, one field per environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    backend_store_uri: SecretStr | None = Field(
        default=None,
        validation_alias="MLFLOW_BACKEND_STORE_URI",
        description="Full PostgreSQL URI of the backend store; when set, the MLFLOW_DB_* parts "
        "are ignored. A URI without a driver uses psycopg2.",
    )
    db_host: str = Field(
        default="postgres",
        validation_alias="MLFLOW_DB_HOST",
        description="PostgreSQL host of the backend store.",
    )
    db_port: int = Field(
        default=5432,
        ge=1,
        le=65535,
        validation_alias="MLFLOW_DB_PORT",
        description="PostgreSQL port of the backend store.",
    )
    db_name: str = Field(
        default="mlflow",
        validation_alias="MLFLOW_DB_NAME",
        description="Database of the backend store (created by postgres/initdb).",
    )
    db_user: str = Field(
        default="mlflow",
        validation_alias="MLFLOW_DB_USER",
        description="Role the server logs in as (created by postgres/initdb, not a superuser).",
    )
    db_password: SecretStr | None = Field(
        default=None,
        validation_alias="MLFLOW_DB_PASSWORD",
        description="Password of MLFLOW_DB_USER; required unless MLFLOW_BACKEND_STORE_URI is set.",
    )
    db_wait_timeout: float = Field(
        default=60.0,
        gt=0,
        validation_alias="MLFLOW_DB_WAIT_TIMEOUT",
        description="Seconds to wait for the database to accept connections at start.",
    )
    artifacts_bucket: str = Field(
        default="mlflow",
        validation_alias="MLFLOW_ARTIFACTS_BUCKET",
        description="S3 bucket holding the artifacts; created at start when missing.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias="MLFLOW_S3_ENDPOINT_URL",
        description="S3 API endpoint (the nginx proxy in front of MinIO); unset means AWS S3.",
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, validation_alias="AWS_ACCESS_KEY_ID", description="S3 access key."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY", description="S3 secret key."
    )
    s3_wait_timeout: float = Field(
        default=60.0,
        gt=0,
        validation_alias="MLFLOW_S3_WAIT_TIMEOUT",
        description="Seconds to wait for the S3 endpoint to answer at start.",
    )
    host: str = Field(
        default="0.0.0.0",
        validation_alias="MLFLOW_HOST",
        description="Interface the server binds to.",
    )
    port: int = Field(
        default=5000,
        ge=1,
        le=65535,
        validation_alias="MLFLOW_PORT",
        description="Port of the server.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        validation_alias="MLFLOW_WORKERS",
        description="Uvicorn worker processes; each costs a few hundred MB of memory.",
    )
    allowed_hosts: str = Field(
        default="mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        validation_alias="MLFLOW_ALLOWED_HOSTS",
        description="Comma-separated Host headers the server answers (fnmatch patterns); "
        "others get 403. /health is exempt.",
    )
    enable_job_execution: bool = Field(
        default=False,
        validation_alias="MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
        description="Run MLflow's background job runner (several extra processes).",
    )
    auth_admin_username: str | None = Field(
        default=None,
        validation_alias="MLFLOW_AUTH_ADMIN_USERNAME",
        description="Admin account of basic auth; setting it turns basic auth on.",
    )
    auth_admin_password: SecretStr | None = Field(
        default=None,
        validation_alias="MLFLOW_AUTH_ADMIN_PASSWORD",
        description="Admin password (at least 12 characters); required when basic auth is on. "
        "Used only when the admin account is created.",
    )
    auth_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias="MLFLOW_FLASK_SERVER_SECRET_KEY",
        description="CSRF secret of the basic-auth app, the same on every replica; required "
        "when basic auth is on.",
    )
    auth_db_name: str = Field(
        default="mlflow_auth",
        validation_alias="MLFLOW_AUTH_DB_NAME",
        description="Database of the basic-auth users, on the backend store's server.",
    )
    auth_default_permission: Literal["READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"] = Field(
        default="READ",
        validation_alias="MLFLOW_AUTH_DEFAULT_PERMISSION",
        description="Permission every authenticated user has on resources without a grant.",
    )

    @field_validator("artifacts_bucket")
    @classmethod
    def _valid_bucket(cls, value: str) -> str:
        if not _BUCKET_NAME.match(value) or ".." in value:
            raise ValueError("not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _complete(self) -> TrackingServerSettings:
        if self.backend_store_uri is None and not _secret(self.db_password):
            raise ValueError("MLFLOW_DB_PASSWORD must be set (or MLFLOW_BACKEND_STORE_URI)")
        if self.backend_store_uri is not None:
            _parse_backend_uri(self.backend_store_uri.get_secret_value())
        if self.auth_enabled:
            if not self.auth_admin_username:
                raise ValueError("basic auth needs MLFLOW_AUTH_ADMIN_USERNAME as well")
            if len(_secret(self.auth_admin_password)) < 12:
                raise ValueError(
                    "basic auth is on (MLFLOW_AUTH_ADMIN_USERNAME is set) but "
                    "MLFLOW_AUTH_ADMIN_PASSWORD is missing or shorter than 12 characters"
                )
            if not _secret(self.auth_secret_key):
                raise ValueError("basic auth is on but MLFLOW_FLASK_SERVER_SECRET_KEY is not set")
        return self

    @property
    def auth_enabled(self) -> bool:
        """Basic auth is on as soon as an admin username or password is given."""
        return bool(self.auth_admin_username) or bool(_secret(self.auth_admin_password))

    def backend_url(self) -> URL:
        """SQLAlchemy URL of the backend store, with its password and the psycopg2 driver."""
        if self.backend_store_uri is not None:
            return _parse_backend_uri(self.backend_store_uri.get_secret_value())
        return URL.create(
            _POSTGRES_DRIVER,
            username=self.db_user,
            password=_secret(self.db_password),
            host=self.db_host,
            port=self.db_port,
            database=self.db_name,
        )

    def auth_url(self) -> URL:
        """SQLAlchemy URL of the basic-auth database: the backend's server, MLFLOW_AUTH_DB_NAME."""
        return self.backend_url().set(database=self.auth_db_name)


# Variables whose values never appear in an error message.
_SECRET_NAMES = frozenset(
    str(field.validation_alias)
    for field in TrackingServerSettings.model_fields.values()
    if field.annotation == SecretStr | None
)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _parse_backend_uri(uri: str) -> URL:
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ValueError("MLFLOW_BACKEND_STORE_URI is not a database URI") from None
    if url.get_backend_name() != "postgresql":
        raise ValueError("MLFLOW_BACKEND_STORE_URI must be a postgresql:// URI")
    return url.set(drivername=_POSTGRES_DRIVER) if url.drivername == "postgresql" else url


def load_settings() -> TrackingServerSettings:
    """Read the settings from the environment; raise SettingsError with a one-line message."""
    try:
        return TrackingServerSettings()
    except ValidationError as error:
        problems = describe_validation_error(error, show_input=True, secret=_SECRET_NAMES)
        raise SettingsError(f"invalid settings: {problems}") from None


# The same function as ml_model.config.describe_validation_error (a unit test keeps the two
# identical): this image installs only the mlflow-server member, not ml_model and its stack.
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
