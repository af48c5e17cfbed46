"""Fixtures shared by every test ring, registered once for the whole repository."""

# With --import-mode=importlib, pytest names a test file such as ml_model/tests/unit/test_x.py
# "ml_model.tests.unit.test_x" and imports each missing parent *by location*: the folders
# ml_model/, mlflow/ and fastapi/ would be bound to those names as empty namespace packages,
# shadowing the installed packages. Importing the real ones first keeps every test on the real code.
import fastapi  # noqa: F401
import ml_model  # noqa: F401
import mlflow  # noqa: F401

pytest_plugins = [
    "tests.support.mlflow_server",
    "tests.support.service_logs",
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.nginx",
    "tests.support.tracking",
]
