"""The ``mlflow server`` command the entrypoint execs, built from the settings without side effects.

Secrets never appear in the argument vector (visible to every process via ``/proc/*/cmdline``):
the backend store URI travels in ``MLFLOW_BACKEND_STORE_URI``, the variable ``mlflow server``
reads for ``--backend-store-uri``, and the basic-auth settings in an ini file and the
``MLFLOW_AUTH_*`` variables MLflow reads itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tracking_server.settings import TrackingServerSettings

# Variables the server processes must not inherit: the parts are folded into the backend URI.
UNSET_VARIABLES = ("MLFLOW_DB_PASSWORD",)


@dataclass(frozen=True)
class ServerCommand:
    """Argument vector and the environment changes to exec it with."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = UNSET_VARIABLES

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the unset variables removed and ``env`` applied on top."""
        merged = {name: value for name, value in base.items() if name not in self.unset}
        merged.update(self.env)
        return merged


def server_command(
    settings: TrackingServerSettings, python: str, auth_config_path: Path | None = None
) -> ServerCommand:
    """``python -m mlflow server`` serving artifacts from the bucket, with basic auth when on.

    ``auth_config_path`` is the ini written by :func:`auth_config_text`; it is required exactly
    when ``settings.auth_enabled``.
    """
    if settings.auth_enabled != (auth_config_path is not None):
        raise ValueError("auth_config_path must be given exactly when basic auth is enabled")
    argv = [
        python,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        f"s3://{settings.artifacts_bucket}",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--allowed-hosts",
        settings.allowed_hosts,
    ]
    env = {
        "MLFLOW_BACKEND_STORE_URI": settings.backend_url().render_as_string(hide_password=False),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if settings.enable_job_execution else "false",
    }
    if auth_config_path is not None:
        argv += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path)
    return ServerCommand(argv=argv, env=env)


def auth_config_text(settings: TrackingServerSettings) -> str:
    """The basic-auth ini: users in their own database, no admin password in the file.

    MLflow reads the admin username and password from ``MLFLOW_AUTH_ADMIN_USERNAME`` and
    ``MLFLOW_AUTH_ADMIN_PASSWORD`` in preference to the file, so the password stays in the
    environment. ``%`` is doubled because configparser interpolates it.
    """
    database_uri = settings.auth_url().render_as_string(hide_password=False)
    lines = [
        "[mlflow]",
        f"default_permission = {settings.auth_default_permission}",
        f"database_uri = {database_uri.replace('%', '%%')}",
        f"admin_username = {settings.auth_admin_username}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
    ]
    return "\n".join(lines) + "\n"
