"""``prediction-api``: run the service under uvicorn (uvloop + httptools).

Settings come from the environment (see ``prediction_api.settings``); ``--host``, ``--port`` and
``--workers`` override API_HOST, API_PORT and API_WORKERS. Settings are checked before uvicorn
starts, so a bad value ends the command with one line naming the variable and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from prediction_api.settings import SettingsError, load_settings

EXIT_SETTINGS = 2
# MLflow's own default is 120 s per HTTP request: a hung tracking server would stall reloads.
CLIENT_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the service's own logger."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["prediction_api"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prediction-api", description="Serve the registry's current model over HTTP."
    )
    parser.add_argument("--host", help="interface to bind (API_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (API_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (API_WORKERS, default 1)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("workers", args.workers))
        if value is not None
    }
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        print(f"prediction-api: {error}", file=sys.stderr)
        return EXIT_SETTINGS

    import uvicorn

    from ml_model.tracking import CLIENT_DEFAULTS

    # Worker processes build their own settings from the environment: pass the overrides on.
    os.environ.update({f"API_{name.upper()}": str(value) for name, value in overrides.items()})
    # MLflow reads its client settings from the environment only: set them once, here.
    for name, value in {**CLIENT_DEFAULTS, **CLIENT_SETTINGS}.items():
        os.environ.setdefault(name, value)
    uvicorn.run(
        "prediction_api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=args.access_log,
        log_level=args.log_level,
        log_config=log_config(args.log_level),
        # The proxy in front (or the client) ends idle connections; keep ours a bit longer.
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
