"""``POST /predict`` bodies → typed feature columns, with every problem named by row and field.
(``POST /invocations`` follows MLflow's rules instead: ``scoring`` and ``conversions``.)

A ``Validator`` is built once per loaded model from its features; the values of each request
are checked column by column (``value_checks``: a whole-column fast path, and a value-by-value
path that names each bad field and row; both accept exactly the same inputs).

``POST /predict`` bodies are first decoded by a typed JSON decoder built from the features
(``decode_predict``): records become slotted rows with no dict per record, and the value rules
below are enforced while decoding, so its rows need no further checks. Whatever it refuses
(bad JSON, a wrong type, a non-finite or out-of-range number, a missing or unknown field) is
parsed again and handed to the record path, which names every problem.

Value rules (the model signature's types, the trainer's cleaning rules):

- numeric features: JSON numbers or null; booleans, strings and non-finite numbers (``NaN``,
  ``Infinity``, which lenient JSON encoders emit) are refused;
- categorical features: JSON strings or null; other types are refused. Strings are trimmed and
  a blank string is missing, as in training; values never seen in training are accepted.

Work is bounded for any body: a large body's structure is checked before it is decoded
(``shape``); a record with more keys than ``Validator.max_keys`` (``shape.max_width``) is refused
as a whole before its keys are looked at, and problems beyond ``errors.MAX_PROBLEMS`` are
counted, not described.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import msgspec

from ml_model.engine import Columns
from prediction_api.errors import InputError, Problems, problem
from prediction_api.features import Feature, Kind
from prediction_api.inputs.shape import max_width
from prediction_api.inputs.value_checks import (
    Column,
    check_values,
    float_matrix,
    json_type,
)

Getter = Callable[[Any], Any]


def _record_getter(feature: Feature) -> Getter:
    """A record's value of ``feature`` in one C call: its key (the record path checks that
    required features are present) or None when an optional one is left out."""
    return itemgetter(feature.name) if feature.required else methodcaller("get", feature.name)


def _columns(rows: list[Any], getters: Sequence[Getter]) -> list[Column]:
    """One list of values per getter, taken from every row (C-level loops)."""
    return [list(map(get, rows)) for get in getters]


def _row_decoder(features: Sequence[Feature]) -> msgspec.json.Decoder[Any]:
    """A JSON decoder for one record or a list of records of ``features``: numbers (integers
    taken as floats) or null for numeric features, strings or null for categorical ones,
    required features present, no other field. Rows hold only numbers, strings and None, so
    the garbage collector need not track them."""
    fields: list[tuple[Any, ...]] = []
    for index, feature in enumerate(features):
        kind = float | None if feature.kind is Kind.NUMERIC else str | None
        fields.append((_slot(index), kind) if feature.required else (_slot(index), kind, None))
    row = msgspec.defstruct(
        "Record",
        fields,
        rename={_slot(i): feature.name for i, feature in enumerate(features)},
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(list[row] | row)  # type: ignore[valid-type]


def _slot(index: int) -> str:
    """The decoded row's attribute for feature ``index`` (feature names need not be
    identifiers)."""
    return f"f{index}"


class Validator:
    """Input checks compiled from a model's features; ``max_rows`` bounds every batch and
    ``max_keys`` every record."""

    def __init__(self, features: Sequence[Feature], max_rows: int) -> None:
        self.features = tuple(features)
        self.max_rows = max_rows
        self.max_keys = max_width(len(self.features))
        self.names = frozenset(f.name for f in self.features)
        self.required = tuple(f.name for f in self.features if f.required)
        self._required_set = frozenset(self.required)
        self._all_required = len(self.required) == len(self.features)
        numeric = [f for f in self.features if f.kind is Kind.NUMERIC]
        categorical = [f for f in self.features if f.kind is Kind.CATEGORICAL]
        self.numeric_names = tuple(f.name for f in numeric)
        self.categorical_names = tuple(f.name for f in categorical)
        self.names_by_kind = (self.numeric_names, self.categorical_names)
        self._record_getters = (
            tuple(map(_record_getter, numeric)),
            tuple(map(_record_getter, categorical)),
        )
        slot = {f.name: attrgetter(_slot(i)) for i, f in enumerate(self.features)}
        self._decoded_getters = (
            tuple(slot[f.name] for f in numeric),
            tuple(slot[f.name] for f in categorical),
        )
        self._decoder = _row_decoder(self.features)

    def _keys_ok(self, records: list[dict[str, Any]]) -> bool:
        """Every record has every required feature and no unknown key (C-level loops)."""
        if not all(map(self.names.issuperset, records)):
            return False
        if self._all_required:
            return set(map(len, records)) == {len(self.names)}
        return all(map(self._required_set.issubset, records))

    # --- request formats -------------------------------------------------------------------

    def decode_predict(self, body: bytes) -> Columns | None:
        """``POST /predict`` straight from its body with the typed decoder; None when the
        decoder refuses it (the caller then parses it and uses ``predict_body``). What the
        decoder accepts needs no value checks: it holds only finite numbers (it refuses NaN
        and Infinity tokens and out-of-range numbers), strings and nulls, each where its
        feature's type allows."""
        try:
            decoded = self._decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError):  # msgspec names an unknown key in
            return None  # its error, and raises UnicodeDecodeError when that key is not UTF-8
        rows = decoded if isinstance(decoded, list) else [decoded]
        self._check_size(len(rows), ("body",))
        numeric, categorical = self._decoded_getters
        return Columns(
            len(rows),
            float_matrix(_columns(rows, numeric), len(rows)),
            tuple(map(tuple, _columns(rows, categorical))),
        )

    def predict_body(self, payload: Any) -> Columns:
        """``POST /predict``: one record (an object) or a list of records."""
        if isinstance(payload, dict):
            return self.records([payload], ("body",), single=True)
        if isinstance(payload, list):
            return self.records(payload, ("body",))
        raise InputError(
            [
                problem(
                    ("body",),
                    f"expected a JSON object (one record) or an array of records, "
                    f"got {json_type(payload)}",
                    "type_error",
                )
            ]
        )

    # --- record lists ------------------------------------------------------------------------

    def _check_width(
        self, width: int, loc: tuple[Any, ...], what: str, row: int | None = None
    ) -> None:
        """Refuse, unread, a record of ``width`` keys, far more than the model has features."""
        if width > self.max_keys:
            raise InputError(
                [
                    problem(
                        loc,
                        f"{width} {what}; the model has {len(self.features)} features, and "
                        f"more than {self.max_keys} {what} are refused without reading them",
                        "too_wide",
                        row,
                    )
                ]
            )

    def _check_size(self, rows: int, loc: tuple[Any, ...]) -> None:
        if rows == 0:
            raise InputError([problem(loc, "empty batch: send at least one record", "too_short")])
        if rows > self.max_rows:
            raise InputError(
                [
                    problem(
                        loc,
                        f"{rows} rows exceed the limit of {self.max_rows} per request",
                        "too_long",
                    )
                ]
            )

    def records(self, records: list[Any], loc: tuple[Any, ...], single: bool = False) -> Columns:
        """A list of records (objects keyed by feature name)."""
        self._check_size(len(records), loc)
        widths = [len(r) if type(r) is dict else -1 for r in records]  # -1: not an object
        widest = max(widths)
        if widest > self.max_keys:
            row = widths.index(widest)
            self._check_width(widest, loc if single else (*loc, row), "fields", row)
        if min(widths) >= 0 and self._keys_ok(records):
            numeric, categorical = self._record_getters
            return check_values(
                len(records),
                _columns(records, numeric),
                _columns(records, categorical),
                self.names_by_kind,
                loc,
                single,
                Problems(),
            )
        return self._records_slow(records, loc, single)

    def _records_slow(self, records: list[Any], loc: tuple[Any, ...], single: bool) -> Columns:
        problems = Problems()
        names = self.names
        readable: list[dict[str, Any]] = []  # a record that is not an object has no values
        for row, record in enumerate(records):
            where = loc if single else (*loc, row)
            if not isinstance(record, dict):
                problems.append(
                    problem(
                        where,
                        f"expected a record (JSON object), got {json_type(record)}",
                        "type_error",
                        row=row,
                    )
                )
                readable.append({})
            else:
                readable.append(record)
                missing = [name for name in self.required if name not in record]
                problems.add(
                    missing,
                    partial(_key_problem, where, row, "required feature is missing", "missing"),
                )
                unknown = [key for key in record if key not in names]
                problems.add(
                    unknown, partial(_key_problem, where, row, "unknown field", "extra_forbidden")
                )
        numeric = [[r.get(name) for r in readable] for name in self.numeric_names]
        categorical = [[r.get(name) for r in readable] for name in self.categorical_names]
        return check_values(
            len(records), numeric, categorical, self.names_by_kind, loc, single, problems
        )


def _key_problem(
    where: tuple[Any, ...], row: int | None, msg: str, kind: str, key: str
) -> dict[str, Any]:
    return problem((*where, key), msg, kind, row, key)
