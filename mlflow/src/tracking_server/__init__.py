"""MLflow tracking server entrypoint: settings, database and bucket preparation, then exec."""
