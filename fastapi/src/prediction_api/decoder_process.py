"""Large request bodies decoded in a process of their own.

Reading, checking and decoding a body holds the interpreter lock. In the serving process,
bodies of megabytes arriving back to back took that lock from the event loop again and again
(each C call of a parse holds it for milliseconds, and the loop waits for it after every
system call): valid one-row requests waited about 85 ms at p99 instead of 1.5 ms. Bodies over
PROCESS_BODY_BYTES therefore go to one decoder process, which builds the model's decoders
from its features (once per model version) and sends back the columns, or the error to
answer. The serving process only moves the bytes: their chunks go to a temporary file (in
``TMPDIR``) as they arrive, which the decoder reads. Joining such a body and pickling it for
the pipe held the lock for milliseconds each, and the p99 above was 12 ms. Smaller bodies are
decoded in the thread pool: for them the round trip costs more than it frees (1000-row
batches, 150 KB, went from 150,000 to 100,000 rows/s through the process). The process starts
at the first large body, and again after it dies; that body is decoded in the thread pool
while it starts.

The process runs at a lower CPU priority (nice DECODER_NICENESS): its work waits for the
serving process's event loop, not the other way round. ``python -m bench.hostile`` (one-row
requests at concurrency 8 while four clients post hostile 8 MB bodies back to back): decoded
in the serving process's threads, a p99 of 85 ms (1.5 ms alone); here, with large bodies read
at full speed (``API_LARGE_BODY_MIB_PER_SECOND=0``), 2.05x the p99 alone, against 1.36x when
the same clients post as many bodies to a sink that only reads them. By default large bodies
are paced beside other traffic (``http.LargeBodyPacer``; README for the figures). Large
bodies are not read one at a time to throttle them: one client uploading slowly would then
hold up every other large body.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from typing import IO

from starlette.concurrency import run_in_threadpool

from prediction_api.errors import ApiError
from prediction_api.features import Feature
from prediction_api.inputs import Converted, Decoders
from prediction_api.runtime import return_large_buffers

PREDICT = "/predict"
PROCESS_BODY_BYTES = 1024 * 1024
DECODER_NICENESS = 10


@lru_cache(maxsize=4)  # in the decoder process: one entry per model version served lately
def _decoders(features: tuple[Feature, ...], max_rows: int) -> Decoders:
    return Decoders(features, max_rows)


def decode(decoders: Decoders, route: str, body: bytes, content_type: bytes | None) -> Converted:
    """``body`` of ``route`` decoded by ``decoders``. A refused body's parse, which the
    traceback's frames hold, is freed here rather than by whoever catches the error (on the
    event loop, freeing 10,000 parsed records took milliseconds)."""
    try:
        if route == PREDICT:
            return decoders.predict(body)
        return decoders.invocations(body, content_type)
    except ApiError as error:
        traceback.clear_frames(error.__traceback__)
        raise


def body_file() -> IO[bytes]:
    """A temporary file (removed when closed) for a body the decoder process will read. The
    serving process writes the body's chunks to it as they arrive, each a copy the kernel
    makes without the interpreter lock: it never joins the body nor pickles it for the pipe,
    each of which held the lock for milliseconds."""
    return tempfile.NamedTemporaryFile(prefix="prediction-api-body-", buffering=0)


def _decode_spooled(
    decoders: Decoders, route: str, spooled: str, content_type: bytes | None
) -> Converted:
    return decode(decoders, route, Path(spooled).read_bytes(), content_type)


def _decode_there(
    features: tuple[Feature, ...],
    max_rows: int,
    route: str,
    spooled: str,
    content_type: bytes | None,
) -> Converted:
    return _decode_spooled(_decoders(features, max_rows), route, spooled, content_type)


def _prepare_process() -> None:
    return_large_buffers()
    os.nice(DECODER_NICENESS)


def _ready() -> None:
    """The first task: the process has imported everything."""


class DecoderProcess:
    """One process that decodes large bodies, started by ``start`` or the first ``decode``."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_prepare_process,
            )
            self._pool.submit(_ready)  # imports now, not on the first large body

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def decode(
        self, decoders: Decoders, route: str, spooled: str, content_type: bytes | None
    ) -> Converted:
        """The body in the file at ``spooled`` (see ``body_file``) decoded in the decoder
        process; in the thread pool while the process starts (the first time, and after it
        died)."""
        pool = self._pool
        if pool is None:
            self.start()
            return await run_in_threadpool(_decode_spooled, decoders, route, spooled, content_type)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                pool,
                _decode_there,
                decoders.features,
                decoders.max_rows,
                route,
                spooled,
                content_type,
            )
        except BrokenProcessPool:
            self.stop()
            self.start()
            return await run_in_threadpool(_decode_spooled, decoders, route, spooled, content_type)
