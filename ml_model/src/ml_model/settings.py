"""Every setting of the trainer and its CLI, read from the environment.

Each field's ``validation_alias`` is the environment variable that sets it. ``MLFLOW_TRACKING_URI``
is MLflow's own variable, read here only because leaving it unset selects the embedded store;
the variables ml_model sets for MLflow and NumPy to read (``tracking.CLIENT_DEFAULTS``,
``cli.ENVIRONMENT_DEFAULTS``) stay theirs. Settings are read at each use, not cached, so a
process that changes its environment (the API sets ``MLFLOW_TRACKING_URI``) is followed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainerSettings(BaseSettings):
    """Configuration of the trainer and the monitor, one field per environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".mlops"),
        validation_alias="ML_MODEL_HOME",
        description="Folder of the embedded store (SQLite database and artifacts), relative to "
        "the working directory unless absolute.",
    )
    tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server (http://...) or store URI; unset means the "
        "embedded SQLite store under ML_MODEL_HOME.",
    )
    ui_url: str | None = Field(
        default=None,
        validation_alias="MLFLOW_UI_URL",
        description="Where users open the MLflow UI, for the links the trainer prints; unset "
        "means the tracking server's own address (http://127.0.0.1:5000 for the embedded store).",
    )
    monitoring_url: str | None = Field(
        default=None,
        validation_alias="MONITORING_DB_URL",
        description="The prediction log's database (SQLAlchemy URL; it may hold a password, "
        "never logged); unset means SQLite at ML_MODEL_HOME/monitoring.db.",
    )
    monitoring_password: str | None = Field(
        default=None,
        validation_alias="MONITORING_DB_PASSWORD",
        description="Password for MONITORING_DB_URL's user, kept out of the URL (any "
        "characters; compose passes the role's secret here).",
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        validation_alias="MONITORING_RETENTION_DAYS",
        description="Days the prediction log keeps rows; the monitor deletes older ones.",
    )
    debug: bool = Field(
        default=False,
        validation_alias="ML_MODEL_DEBUG",
        description="Any non-empty value: a failing command shows its traceback instead of "
        "one line.",
    )
    git_commit: str = Field(
        default="unknown",
        validation_alias="GIT_COMMIT",
        description="Commit recorded on runs when the source tree is not a git checkout.",
    )

    @field_validator("debug", mode="before")
    @classmethod
    def _any_value_is_on(cls, value: object) -> object:
        return bool(value) if isinstance(value, str) else value

    @property
    def monitoring_store_url(self) -> str:
        """The prediction log's URL (``store.store_url``); holds the password."""
        from ml_model.monitoring.store import store_url

        return store_url(self.monitoring_url, self.monitoring_password, self.home)


def load_settings() -> TrainerSettings:
    """The settings as the environment gives them now."""
    return TrainerSettings()
