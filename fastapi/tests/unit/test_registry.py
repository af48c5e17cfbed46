"""The registry client: its own tracking URI, a fast and redacted failure when the tracking
server does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from prediction_api.registry import Registry, TransientError
from prediction_api.settings import ApiSettings
from tools.processes import free_port


def test_an_unreachable_server_is_a_transient_error_without_credentials() -> None:
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    settings = ApiSettings(model_name="m", tracking_uri=uri)
    registry = Registry(settings)
    assert registry.uri == uri
    with pytest.raises(TransientError) as caught:
        registry.resolve(settings)
    message = str(caught.value)
    assert "unreachable" in message and "s3cret" not in message


def test_the_embedded_store_needs_no_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ML_MODEL_HOME", str(tmp_path))
    registry = Registry(ApiSettings(model_name="m"))
    assert registry.uri.startswith("sqlite:///") and str(tmp_path) in registry.uri
    registry.check_reachable()  # nothing to reach
