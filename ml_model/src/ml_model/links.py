"""Links into the MLflow UI that open its model-training view, and URIs safe to show.

MLflow 3.17's UI opens an experiment in its GenAI workspace (traces, evaluations) unless the
hash route carries ``workflowType=machine_learning`` (or the user switched the sidebar once);
runs, models and the registry live in the model-training view. Every link the project prints
carries the parameter, and the trainer tags its experiments ``mlflow.experimentKind`` so the UI
knows them for what they are.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

MODEL_TRAINING_VIEW = "workflowType=machine_learning"
# What MLflow's UI reads to tell a classic model-training experiment from a GenAI one.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Where `make demo` and the compose stack serve the UI; the embedded store has none of its own.
DEFAULT_UI = "http://127.0.0.1:5000"


# The user part of every URI in a text (``scheme://user:password@``, the last ``@`` before the
# host), and a ``password`` query parameter's value.
_USER_INFO = re.compile(r"//[^/?#\s]*@")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#\s]*")


def redacted(text: str) -> str:
    """``text`` safe to log, show or store: the user part of every URI in it and any
    ``password`` query parameter replaced by ``***`` (``postgresql://***@db/x``,
    ``http://***@host``, ``...?password=***``); paths and e-mail addresses unchanged."""
    text = _USER_INFO.sub("//***@", text)
    return _QUERY_PASSWORD.sub(r"\g<key>***", text)


def ui_base(tracking_uri: str) -> str:
    """The UI's address for a tracking URI: the server itself (credentials removed), or the
    default address where `make demo` serves the embedded store."""
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return DEFAULT_UI


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING_VIEW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def model_url(base: str, name: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}?{MODEL_TRAINING_VIEW}"


def model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}?{MODEL_TRAINING_VIEW}"
