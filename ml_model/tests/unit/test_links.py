"""Links into the MLflow UI open the model-training view, and URIs shown carry no secret."""

from __future__ import annotations

import pytest

from ml_model import links


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:s3cret@mlflow:5000", "http://***@mlflow:5000"),
        ("https://token@host/path?x=1", "https://***@host/path?x=1"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////tmp/store/mlflow.db", "sqlite:////tmp/store/mlflow.db"),
    ],
)
def test_redacted_hides_credentials_only(uri: str, shown: str) -> None:
    assert links.redacted(uri) == shown


def test_ui_base_is_the_server_without_credentials_or_the_demo_address() -> None:
    assert links.ui_base("http://user:pw@mlflow.example:5000/") == "http://mlflow.example:5000"
    assert links.ui_base("sqlite:////tmp/mlflow.db") == links.DEFAULT_UI


def test_every_link_opens_the_model_training_view() -> None:
    base = "http://127.0.0.1:5000"
    urls = [
        links.experiment_url(base, "3"),
        links.run_url(base, "3", "abc"),
        links.model_url(base, "churn model"),
        links.model_version_url(base, "churn model", "7"),
    ]
    assert urls[1] == f"{base}/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert urls[3] == f"{base}/#/models/churn%20model/versions/7?workflowType=machine_learning"
    assert all(url.endswith("?workflowType=machine_learning") for url in urls)
