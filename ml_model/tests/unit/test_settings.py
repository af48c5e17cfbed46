"""Settings of the trainer: the variables it reads, their defaults, and where they take effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_model import tracking
from ml_model.settings import TrainerSettings, load_settings

ALL_NAMES = [str(field.validation_alias) for field in TrainerSettings.model_fields.values()]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_names_and_defaults() -> None:
    assert set(ALL_NAMES) == {
        "ML_MODEL_HOME",
        "MLFLOW_TRACKING_URI",
        "ML_MODEL_DEBUG",
        "GIT_COMMIT",
        "MLFLOW_UI_URL",
        "MONITORING_DB_URL",
        "MONITORING_DB_PASSWORD",
        "MONITORING_RETENTION_DAYS",
    }
    settings = load_settings()
    assert settings.home == Path(".mlops")
    assert settings.tracking_uri is None
    assert settings.debug is False
    assert settings.git_commit == "unknown"
    assert settings.ui_url is None
    assert settings.monitoring_url is None
    assert settings.monitoring_store_url == f"sqlite:///{Path('.mlops/monitoring.db').resolve()}"
    assert settings.retention_days == 30


@pytest.mark.parametrize(
    "name",
    [
        "ML_MODEL_HOME",
        "MLFLOW_TRACKING_URI",
        "GIT_COMMIT",
        "MLFLOW_UI_URL",
        "MONITORING_DB_URL",
        "MONITORING_RETENTION_DAYS",
    ],
)
def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "")
    assert load_settings() == TrainerSettings()


@pytest.mark.parametrize(("value", "debug"), [("", False), ("1", True), ("0", True), ("no", True)])
def test_any_debug_value_turns_tracebacks_on(
    monkeypatch: pytest.MonkeyPatch, value: str, debug: bool
) -> None:
    monkeypatch.setenv("ML_MODEL_DEBUG", value)
    assert load_settings().debug is debug


def test_settings_follow_the_environment_at_each_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.embedded_home() == tmp_path / ".mlops"
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / '.mlops' / 'mlflow.db'}"
    assert (tmp_path / ".mlops").is_dir()

    monkeypatch.setenv("ML_MODEL_HOME", str(tmp_path / "store"))
    assert tracking.embedded_uri() == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.tracking_uri() == "http://mlflow:5000"


def test_monitoring_password_joins_the_url_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_DB_URL", "postgresql+psycopg2://writer@db:5432/monitoring")
    monkeypatch.setenv("MONITORING_DB_PASSWORD", "p@ss/w:rd")
    url = load_settings().monitoring_store_url
    assert url == "postgresql+psycopg2://writer:p%40ss%2Fw%3Ard@db:5432/monitoring"
