"""Settings: the environment variables, their defaults, and one-line errors naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prediction_api.settings import SettingsError, load_settings

ENTRYPOINT = str(Path(sys.executable).with_name("prediction-api"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("API_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_MODEL_NAME", "penguins-body-mass")
    settings = load_settings()
    assert settings.model_uri == "models:/penguins-body-mass@champion"
    assert settings.tracking_uri is None
    assert settings.poll_interval_seconds == 10
    assert settings.api_keys == ()
    assert settings.max_rows == 10_000
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


def test_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "API_MODEL_NAME": "m",
        "API_MODEL_ALIAS": "staging",
        "API_POLL_INTERVAL_SECONDS": "2.5",
        "API_KEYS": " first-key-0123456789 ,second-key-0123456789,",
        "API_MAX_ROWS": "50",
        "API_MAX_BODY_BYTES": "4096",
        "API_LARGE_BODY_MIB_PER_SECOND": "0",
        "API_HOST": "0.0.0.0",
        "API_PORT": "9000",
        "API_WORKERS": "2",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.model_uri == "models:/m@staging"
    assert settings.poll_interval_seconds == 2.5
    assert settings.api_keys == ("first-key-0123456789", "second-key-0123456789")
    assert (settings.max_rows, settings.max_body_bytes) == (50, 4096)
    assert settings.large_body_mib_per_second == 0
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 2)
    assert "key-0123" not in repr(settings)


def test_empty_keys_mean_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_MODEL_NAME", "m")
    monkeypatch.setenv("API_KEYS", "")
    assert load_settings().api_keys == ()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("API_PORT", "0", "API_PORT: Input should be greater than or equal to 1 (got '0')"),
        ("API_WORKERS", "many", "API_WORKERS: Input should be a valid integer"),
        ("API_POLL_INTERVAL_SECONDS", "-1", "API_POLL_INTERVAL_SECONDS: Input should be greater"),
        ("API_MAX_ROWS", "0", "API_MAX_ROWS: Input should be greater than or equal to 1"),
        ("API_MAX_BODY_BYTES", "10", "API_MAX_BODY_BYTES: Input should be greater"),
        ("API_LARGE_BODY_MIB_PER_SECOND", "-1", "API_LARGE_BODY_MIB_PER_SECOND: Input should"),
        ("API_MODEL_ALIAS", "a b", "API_MODEL_ALIAS: String should match pattern"),
        ("API_KEYS", "short", "API_KEYS: each key needs at least 16 characters"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("API_MODEL_NAME", "m")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    if name == "API_KEYS":
        assert value not in str(caught.value)  # keys never echo back


def test_model_name_is_required() -> None:
    with pytest.raises(SettingsError, match="API_MODEL_NAME must be set"):
        load_settings()


def test_the_command_exits_with_one_line_on_bad_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_")}
    env.update(API_MODEL_NAME="m", API_PORT="70000")
    done = subprocess.run(
        [ENTRYPOINT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("prediction-api: invalid settings: API_PORT:")
