"""The inference engine: a fitted pipeline compiled once into numpy arithmetic and one booster call.

``pipeline.predict`` runs the DataPreprocessor, every ColumnTransformer step (the one-hot encoder
is most of its time on large batches) and XGBoost through pandas: milliseconds on one row, and
seconds per million rows. ``compile_pipeline`` reads what those steps learned (the feature schema,
imputation values, scaler parameters, one-hot categories, the classes and the booster with its
best iteration) and ``CompiledModel`` rebuilds the same dense matrix straight from typed columns
with numpy, then calls XGBoost's prediction directly. Every arithmetic step mirrors
scikit-learn's own (same operations, same order, float64), so the matrix is identical and so are
the predictions; ``parity`` measures that against ``pipeline.predict`` on real rows, and the
trainer refuses to register a model that fails it.

Only the pipelines ``ml_model.pipeline`` builds are compiled; anything else raises CompileError
naming what is not supported, and the model is refused rather than served approximately. The API,
``ml-model predict`` and Spark workers all predict through this module.
"""

from ml_model.engine.compiler import CompileError, compile_pipeline
from ml_model.engine.model import Columns, CompiledModel, Prediction
from ml_model.engine.parity import (
    PARITY_RTOL,
    ParityError,
    check_parity,
    difference,
    parity,
    pipeline_prediction,
)
from ml_model.engine.report import InputReport, input_report

__all__ = [
    "PARITY_RTOL",
    "Columns",
    "CompileError",
    "CompiledModel",
    "InputReport",
    "ParityError",
    "Prediction",
    "check_parity",
    "compile_pipeline",
    "difference",
    "input_report",
    "parity",
    "pipeline_prediction",
]
