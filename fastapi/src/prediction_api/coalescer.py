"""One booster call per event-loop turn for all the small requests that became ready in it.

Under concurrent load a single XGBoost call predicts many one-row requests, whose fixed cost
per call dominates a one-row prediction. Rows are independent in XGBoost, so each request
gets exactly the rows it would have got alone.
"""

from __future__ import annotations

import asyncio
from itertools import chain

import numpy as np

from ml_model.engine import Columns, CompiledModel


class Coalescer:
    """Encodes and predicts once per event-loop turn for every batch submitted in that turn."""

    def __init__(self) -> None:
        self._pending: list[tuple[CompiledModel, Columns, asyncio.Future[np.ndarray]]] = []

    async def predict(self, compiled: CompiledModel, batch: Columns) -> np.ndarray:
        """The booster's output rows for ``batch``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((compiled, batch, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[CompiledModel, Columns, asyncio.Future[np.ndarray]]]] = {}
        for item in pending:  # one group per model: a swap may land between two requests
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            compiled = items[0][0]
            try:
                raw = compiled.booster(compiled.matrix(merge([b for _, b, _ in items])))
            except Exception as error:
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for _, batch, future in items:
                if not future.done():
                    future.set_result(raw[start : start + batch.rows])
                start += batch.rows


def merge(batches: list[Columns]) -> Columns:
    """One batch holding the rows of ``batches`` in order."""
    if len(batches) == 1:
        return batches[0]
    columns = len(batches[0].categorical)
    return Columns(
        sum(b.rows for b in batches),
        np.concatenate([b.numeric for b in batches]),
        tuple(
            tuple(chain.from_iterable(b.categorical[j] for b in batches)) for j in range(columns)
        ),
    )
