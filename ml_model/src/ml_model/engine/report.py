"""What the engine could not use as given: counted per column, never silently.

A numeric cell that is present but is no number (``"0,23"``, ``"n/a "``) is scored as missing; a
categorical value never seen in training sets no one-hot column, or the column its feature's
infrequent categories share where it has one (a category seen in training, infrequent or not,
is no unseen one). Both are legitimate outcomes for one odd cell and silent damage for a whole
column, so scoring counts them and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_model.engine.model import Columns, CompiledModel


@dataclass
class InputReport:
    """Per column: how many cells were not numbers (numeric features) or unseen categories
    (categorical features), with the first such value as an example; ``as_infrequent``: the
    categorical columns whose unseen categories were scored as their infrequent ones."""

    unparsed: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    as_infrequent: set[str] = field(default_factory=set)

    def count(self, kind: dict[str, int], column: str, bad: pd.Series) -> None:
        if bad.empty:
            return
        kind[column] = kind.get(column, 0) + len(bad)
        self.examples.setdefault(column, str(bad.iloc[0]))

    def merge(self, other: InputReport) -> None:
        for mine, theirs in ((self.unparsed, other.unparsed), (self.unseen, other.unseen)):
            for column, n in theirs.items():
                mine[column] = mine.get(column, 0) + n
        for column, example in other.examples.items():
            self.examples.setdefault(column, example)
        self.as_infrequent |= other.as_infrequent

    def lines(self) -> list[str]:
        """One line per affected column, for users."""
        return [
            f"column '{c}': {n} value(s) are not numbers and were scored as missing "
            f"(e.g. {self.examples[c]!r})"
            for c, n in self.unparsed.items()
        ] + [
            f"column '{c}': {n} value(s) are categories unseen in training and were scored "
            + ("as its infrequent ones" if c in self.as_infrequent else "as none of the known ones")
            + f" (e.g. {self.examples[c]!r})"
            for c, n in self.unseen.items()
        ]


def input_report(compiled: CompiledModel, frame: pd.DataFrame, columns: Columns) -> InputReport:
    """Count the cells of the raw ``frame`` that ``columns`` (the engine's view of it, from
    ``CompiledModel.columns``) could not use: present but no number, or a category the model
    never saw."""
    report = InputReport()
    for position, name in enumerate(compiled.schema.numeric):
        raw = frame.get(name)
        if raw is None or pd.api.types.is_numeric_dtype(raw.dtype):
            continue  # absent, or numbers (booleans included) already
        text = raw.astype("string").str.strip()
        present = (text.notna() & text.ne("")).to_numpy(dtype=bool)
        report.count(report.unparsed, name, raw[present & np.isnan(columns.numeric[:, position])])
    for column in compiled.categorical:  # cleaned: trimmed strings, or NaN for missing
        values = pd.Series(columns.categorical[column.position], dtype=object)
        unseen = values.notna() & ~values.isin(column.lookup.keys())
        report.count(report.unseen, column.name, values[unseen])
        if column.unknown >= 0 and unseen.any():
            report.as_infrequent.add(column.name)
    return report
