"""The model pipeline: DataPreprocessor → ColumnTransformer → XGBoost, and how it is stored.

The ColumnTransformer's output is dense on purpose: XGBoost reads entries absent from a sparse
matrix as *missing*, so a sparse one-hot 0 (or a scaled value of exactly 0) would mean "missing"
in training and 0 after densifying at serving time. Dense output keeps 0 as 0 and NaN as missing
on every path.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBClassifier, XGBRegressor

from ml_model.config import FeaturesConfig, ModelConfig, Task
from ml_model.preprocessing import DataPreprocessor, FeatureSchema

MISSING_CATEGORY = "missing"
INFREQUENT = "(infrequent)"  # the readable name of a column's infrequent-categories feature

# The pipeline's step names, named once: every reader of a fitted pipeline goes through these
# (and the accessors below), never through string literals of its own.
PREPROCESS, ENCODE, MODEL = "preprocess", "encode", "model"
NUMERIC, CATEGORICAL = "numeric", "categorical"  # the encoder's two parts
IMPUTE, SCALE, ONEHOT = "impute", "scale", "onehot"  # the steps inside them

# Types skops may rebuild when loading a stored pipeline: our own classes and the library types
# a fitted pipeline holds beyond skops' defaults. Kept next to the classes it names; a test
# checks it against what skops reports for fitted pipelines of every task.
SKOPS_TRUSTED_TYPES = [
    "ml_model.preprocessing.DataPreprocessor",
    "ml_model.preprocessing.FeatureSchema",
    "ml_model.pipeline.LabelEncodedClassifier",
    "numpy.dtype",
    "sklearn.compose._column_transformer.make_column_selector",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
]


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Wrap a classifier that needs labels 0..k-1 so that the pipeline predicts the original
    labels (strings or numbers). ``classes_`` holds them in encoded order."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def _encode(self, y: Any) -> np.ndarray:
        codes = np.searchsorted(self.classes_, np.asarray(y))
        return np.asarray(codes, dtype=np.int64)

    def fit(self, X: Any, y: Any, **fit_params: Any) -> Self:
        self.classes_ = np.unique(np.asarray(y))
        if "eval_set" in fit_params:
            fit_params["eval_set"] = [(Xv, self._encode(yv)) for Xv, yv in fit_params["eval_set"]]
        self.estimator_ = clone(self.estimator).fit(X, self._encode(y), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.asarray(self.classes_[np.asarray(self.estimator_.predict(X), dtype=np.int64)])

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(X))


def build_encoder(features: FeaturesConfig) -> ColumnTransformer:
    """Impute (unless ``none``, optionally adding missing indicators) + scale numeric columns,
    impute + one-hot categorical ones (at most ``max_categories`` columns each, rare and unseen
    categories in one "infrequent" column), dense output."""
    scaler = StandardScaler() if features.scaling == "standardize" else MinMaxScaler()
    numeric_steps: list[tuple[str, Any]] = [(SCALE, scaler)]  # scalers keep NaN as NaN
    if features.numeric_imputation != "none":
        imputer = SimpleImputer(
            strategy=features.numeric_imputation, add_indicator=features.missing_indicator
        )
        numeric_steps.insert(0, (IMPUTE, imputer))
    numeric = Pipeline(numeric_steps)
    categorical = Pipeline(
        [
            (
                IMPUTE,
                SimpleImputer(
                    strategy=features.categorical_imputation, fill_value=MISSING_CATEGORY
                ),
            ),
            # 0 and 1 are exact in float32, and the ColumnTransformer's hstack upcasts them to
            # the numeric part's float64: the same encoded matrix, while the one-hot block, its
            # largest intermediate, takes half the memory (and time to fill). Rare categories
            # (max_categories, min_frequency) share one "infrequent" column, and so do
            # categories unseen in training where a column has one: unseen is closest to rare,
            # and the trees learned that column, whereas an all-zero block never occurred in
            # training. A column without infrequent categories encodes unseen ones as all zeros.
            (
                ONEHOT,
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=features.max_categories,
                    min_frequency=features.min_frequency,
                    sparse_output=False,
                    dtype=np.float32,
                ),
            ),
        ]
    )
    return ColumnTransformer(
        [
            (NUMERIC, numeric, make_column_selector(dtype_include="number")),
            (CATEGORICAL, categorical, make_column_selector(dtype_exclude="number")),
        ],
        sparse_threshold=0.0,
    )


def build_estimator(task: Task, model: ModelConfig, seed: int) -> Any:
    """The XGBoost estimator for the task, with the config's params passed through."""
    params = {"random_state": seed, **model.params, "device": model.device}
    if model.early_stopping_rounds is not None:
        params["early_stopping_rounds"] = model.early_stopping_rounds
    if task is Task.REGRESSION:
        return XGBRegressor(**params)
    return LabelEncodedClassifier(XGBClassifier(**params))


def build_pipeline(
    task: Task,
    features: FeaturesConfig,
    model: ModelConfig,
    seed: int,
    drop_columns: list[str],
    numeric_columns: list[str],
    categorical_columns: list[str],
) -> Pipeline:
    """The untrained pipeline: ``preprocess`` → ``encode`` → ``model``."""
    return Pipeline(
        [
            (
                PREPROCESS,
                DataPreprocessor(
                    drop_columns=tuple(drop_columns),
                    numeric_columns=tuple(numeric_columns),
                    categorical_columns=tuple(categorical_columns),
                ),
            ),
            (ENCODE, build_encoder(features)),
            (MODEL, build_estimator(task, model, seed)),
        ]
    )


def feature_schema(pipeline: Pipeline) -> FeatureSchema:
    """The input columns the fitted pipeline's DataPreprocessor found, by kind."""
    schema: FeatureSchema = pipeline.named_steps[PREPROCESS].schema_
    return schema


def xgboost_model(pipeline: Pipeline) -> XGBRegressor | XGBClassifier:
    """The fitted XGBoost estimator at the end of a pipeline; TypeError when the final step is
    something else."""
    final = pipeline.steps[-1][1]
    if isinstance(final, LabelEncodedClassifier):
        final = final.estimator_
    if not isinstance(final, XGBRegressor | XGBClassifier):
        raise TypeError(f"the final estimator is a {type(final).__name__}, not XGBoost's")
    return final


def readable_feature_names(pipeline: Pipeline) -> list[str]:
    """Names of the encoded features XGBoost sees: ``bill_length_mm``, ``island = Dream``,
    ``user_id = (infrequent)`` for a column's infrequent categories."""
    encoder: ColumnTransformer = pipeline.named_steps[ENCODE]
    names: list[str] = []
    for name, transformer, columns in encoder.transformers_:
        if name == NUMERIC:
            names.extend(transformer.get_feature_names_out(columns))
        elif name == CATEGORICAL:
            onehot: OneHotEncoder = transformer.named_steps[ONEHOT]
            infrequent = getattr(onehot, "infrequent_categories_", [None] * len(columns))
            for column, categories, rare in zip(
                columns, onehot.categories_, infrequent, strict=True
            ):
                rare_set = set() if rare is None else set(rare)
                names.extend(f"{column} = {c}" for c in categories if c not in rare_set)
                if rare_set:
                    names.append(f"{column} = {INFREQUENT}")
    return names
