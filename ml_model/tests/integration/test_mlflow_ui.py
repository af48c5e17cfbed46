"""What users see: the MLflow UI, rendered by a real headless Chromium from the real
``mlflow server``, opens the links the trainer prints in the model-training view and shows the
run, its dataset, its plots and the ``champion`` alias.

The screenshots are kept under ``.test-artifacts/mlflow-ui/`` (the README shows two of them).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ml_model import links
from tests.support.mlflow_server import MlflowServer

from .conftest import Trainer

ARTIFACTS = Path(__file__).resolve().parents[3] / ".test-artifacts" / "mlflow-ui"
BROWSER = shutil.which("chromium")
# Navigation entries of each view of the UI's sidebar.
MODEL_TRAINING_ONLY = "Model registry"
GENAI_ONLY = ("Evaluation runs", "Judges", "Prompts")

pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs chromium (make setup installs it)")


def browse(url: str, screenshot: Path | None = None, height: int = 1000) -> list[str]:
    """The page's text, one entry per DOM text node (no-break spaces as spaces), once its
    scripts have run; with ``screenshot`` a PNG of the page as well."""
    assert BROWSER is not None
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [f"--window-size=1400,{height}", "--virtual-time-budget=20000"]
    if screenshot is not None:
        shot = [*command, f"--screenshot={screenshot}", url]
        subprocess.run(shot, capture_output=True, timeout=120, check=True)
    dom = subprocess.run(
        [*command, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "\n", dom)).replace("\xa0", " ")
    return [line.strip() for line in text.split("\n") if line.strip()]


def assert_model_training_view(texts: list[str]) -> None:
    assert MODEL_TRAINING_ONLY in texts, texts[:40]
    assert not set(GENAI_ONLY) & set(texts), texts[:40]


def test_links_open_the_run_and_the_registry_in_the_model_training_view(
    train_config: Trainer, tracking: MlflowClient, mlflow_server: MlflowServer
) -> None:
    name = "ui-body-mass"
    result = train_config("regression.yaml", f"mlflow.registered_model={name}")
    run = tracking.get_run(result.run_id)
    experiment = tracking.get_experiment(result.experiment_id)
    assert experiment.tags[links.EXPERIMENT_KIND_TAG] == links.EXPERIMENT_KIND
    base = links.ui_base(mlflow_server.url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    run_page = links.run_url(base, result.experiment_id, result.run_id)
    texts = browse(run_page, ARTIFACTS / "run.png")
    assert_model_training_view(texts)
    assert run.info.run_name in texts
    (dataset,) = run.inputs.dataset_inputs
    assert f"{dataset.dataset.name} ({dataset.dataset.digest})" in texts

    artifacts_page = run_page.replace("?", "/artifacts?", 1)
    assert "plots" in browse(artifacts_page, ARTIFACTS / "run-artifacts.png")

    model_page = links.model_url(base, name)
    texts = browse(model_page, ARTIFACTS / "model.png", height=1600)
    assert_model_training_view(texts)
    assert f"Predicts body_mass_g ({result.task})." in " ".join(texts)
    assert "@ champion" in texts  # the alias, on the version that holds it

    # Without the parameter MLflow 3.17 opens its GenAI workspace: the reason links carry it.
    plain = browse(run_page.split("?", 1)[0])
    assert MODEL_TRAINING_ONLY not in plain and "Evaluation runs" in plain
