"""Shared by the batch-scoring tests: a small registered classifier and penguin tables to score."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from ml_model.config import load_config
from ml_model.train import train

from .conftest import QUICK

CLASSES = ("Adelie", "Chinstrap", "Gentoo")
PROBABILITIES = [f"probability_{c}" for c in CLASSES]


@contextmanager
def tracking_to(url: str) -> Iterator[None]:
    """MLFLOW_TRACKING_URI set to ``url`` for the block (module fixtures cannot monkeypatch)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", url)
        mlflow.set_tracking_uri(url)
        yield


def penguins(penguins_csv: Path, copies: int = 1) -> pd.DataFrame:
    """The penguins without their species, ``copies`` times over, with a ``row_id`` key and
    integer flipper lengths (int64, no missing value: the signature declares them ``long``)."""
    frame = pd.read_csv(penguins_csv).dropna(subset=["flipper_length_mm"])
    frame = frame.drop(columns=["species"])
    frame = pd.concat([frame] * copies, ignore_index=True)
    frame["flipper_length_mm"] = frame["flipper_length_mm"].astype("int64")
    return frame.assign(row_id=np.arange(len(frame), dtype=np.int64))


def train_classifier(configs_dir: Path, penguins_csv: Path, folder: Path, name: str) -> None:
    """Register a small species classifier (20 trees) on integer flipper lengths as ``name``
    and make it the champion (the tracking URI must be set)."""
    frame = pd.read_csv(penguins_csv).dropna(subset=["flipper_length_mm"])
    frame["flipper_length_mm"] = frame["flipper_length_mm"].astype("int64")
    source = folder / "train.parquet"
    frame.to_parquet(source, index=False)
    config = configs_dir / "classification.yaml"
    overrides = [
        *QUICK,
        f"data.source={source}",
        f"mlflow.registered_model={name}",
        "model.params.n_estimators=20",
    ]
    train(load_config(config, overrides), config)


def split(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """``frame`` in ``parts`` consecutive pieces of nearly equal size."""
    return [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), parts)]


def with_bad_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """``frame`` with rows the API would refuse (infinite numbers) and odd but valid ones (a
    missing value, an unseen category, padded text); the refused rows' ids and the column
    each reason names."""
    frame = frame.copy()
    frame.loc[3, "bill_length_mm"] = np.inf
    frame.loc[7, "body_mass_g"] = -np.inf
    frame.loc[8, "bill_depth_mm"] = np.nan
    frame.loc[9, "island"] = "Atlantis"
    frame.loc[10, "sex"] = "  female "
    ids = frame["row_id"]
    return frame, {int(ids[3]): "bill_length_mm", int(ids[7]): "body_mass_g"}


def read_output(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Scored rows (sorted by ``row_id``), rejected rows and the manifest of a job's output."""
    scored = pd.read_parquet(folder).sort_values("row_id", ignore_index=True)
    rejects_folder = folder / "_rejects"
    rejects = pd.read_parquet(rejects_folder) if rejects_folder.is_dir() else pd.DataFrame()
    manifest = json.loads((folder / "_manifest.json").read_text())
    return scored, rejects, manifest
