"""Fixtures shared by every test ring, registered once for the whole repository."""

pytest_plugins = ["tests.support.mlflow_server"]
