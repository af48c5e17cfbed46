"""Request bodies → the engine's columns, for one model: the one surface the rest of the
service uses (``Inputs``, and ``Converted`` for what it returns).

``POST /predict`` takes records in the service's own strict format (``validation``,
``value_checks``); ``POST /invocations`` takes what ``mlflow models serve`` takes
(``scoring``: content types and the typed decoder; ``tables``: MLflow's formats;
``conversions``: its value conversions). Both decode well-typed JSON in one pass with a
decoder built from the features; a large body's structure is bounded first (``shape``).
``unseen`` counts categories the model never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml_model.engine import Columns, CompiledModel
from prediction_api.features import Feature
from prediction_api.http import parse_json
from prediction_api.inputs.conversions import Converted
from prediction_api.inputs.scoring import ScoringDecoder
from prediction_api.inputs.shape import Bounds
from prediction_api.inputs.unseen import UnseenCounter
from prediction_api.inputs.validation import Validator

__all__ = ["Converted", "Decoders", "Inputs", "Validator"]


class Decoders:
    """Decoders for ``features`` (in the engine's order); every batch holds at most
    ``max_rows`` rows. Built from those two alone, so that another process can build the
    same (``decoder_process``)."""

    def __init__(self, features: Sequence[Feature], max_rows: int) -> None:
        self.features = tuple(features)
        self.max_rows = max_rows
        self.bounds = Bounds(max_rows, len(features))
        self.validator = Validator(features, max_rows)
        self.scoring = ScoringDecoder(features, self.bounds)

    def predict(self, body: bytes) -> Converted:
        """A ``POST /predict`` body; InputError (422) or ApiError (400) naming each problem."""
        self.bounds.check_predict(body)
        batch = self.validator.decode_predict(body)
        if batch is None:
            batch = self.validator.predict_body(parse_json(body))
        return Converted(batch)

    def invocations(self, body: bytes, content_type: bytes | None) -> Converted:
        """A ``POST /invocations`` body; ApiError with MLflow's error code when refused."""
        return self.scoring.decode(body, content_type)

    def records(self, records: list[Any], loc: tuple[Any, ...] = ("body",)) -> Columns:
        """Parsed records (objects keyed by feature name), by the ``/predict`` rules."""
        return self.validator.records(records, loc)


class Inputs(Decoders):
    """The decoders of ``compiled``'s features, and its count of unseen categories."""

    def __init__(self, features: Sequence[Feature], compiled: CompiledModel, max_rows: int) -> None:
        super().__init__(features, max_rows)
        self._unseen = UnseenCounter(compiled)

    def unseen(self, columns: Columns) -> dict[str, int]:
        """Feature → values of ``columns`` that are categories the model never saw."""
        return self._unseen.count(columns)
