"""Links into the MLflow UI open the model-training view, and URIs shown carry no secret."""

from __future__ import annotations

import pytest

from ml_model import links


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:s3cret@mlflow:5000", "http://***@mlflow:5000"),
        ("https://token@host/path?x=1", "https://***@host/path?x=1"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("postgresql://u:s3%40cret@db/x?sslmode=require", "postgresql://***@db/x?sslmode=require"),
        ("postgresql://u:p@ss@db/x", "postgresql://***@db/x"),  # an unescaped @ in a password
        (
            "postgresql://u@db/x?sslmode=a&password=s3cret",
            "postgresql://***@db/x?sslmode=a&password=***",
        ),
        ("sqlite:////tmp/store/mlflow.db", "sqlite:////tmp/store/mlflow.db"),
        ("postgresql//u:s3cret@db/x", "postgresql//***@db/x"),  # malformed, still hidden
        (
            "at https://u:p@a.example/x and s3://key:secret@bucket/k, not mail@example.org",
            "at https://***@a.example/x and s3://***@bucket/k, not mail@example.org",
        ),
    ],
)
def test_redacted_hides_the_user_part_of_every_uri(text: str, shown: str) -> None:
    assert links.redacted(text) == shown


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
