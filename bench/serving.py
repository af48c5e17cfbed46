"""Serving latency and throughput: the prediction API vs ``mlflow models serve``, one model.

    .venv/bin/python -m bench.serving [--duration 20] [--rounds 5] [--api-workers 1]
                                      [--mlflow-workers 1] [--trees 300] [--rows 1000]
                                      [--train-rows 20000] [--log-sample-rate R]
                                      [--json results.json]

(from the repository root; the children it starts run the same module from there).

One run trains a regression pipeline (``--trees`` trees of depth 6 on ``ml_model.synthetic``
mixed data: 8 numeric and 4 categorical features, one-hot encoded) into a fresh embedded store
and registers it. Then:

- ``prediction-api`` (``--api-workers`` uvicorn workers, uvloop + httptools; one is its best
  setting on two cores shared with the load generator: two spread the load evenly but gave
  about the same throughput and a worse p99) starts first, with its tracking URI pointing at
  an ``mlflow server`` that is not running yet; the server then
  starts on that store, and the time from its first healthy answer to the API's ``/ready`` is
  the readiness time. The API is measured on ``POST /predict`` (one record / a list).
- ``mlflow models serve --env-manager local --workers N`` (default 1, its own default) serves
  the same registered version and is measured on ``POST /invocations`` with
  ``dataframe_split`` (its most compact input).

Both run side by side and are measured in turns: each measure in ``--rounds`` rounds, each
server one slice per round, after the machine has settled (the prediction log's writer done
with the last slice), so noise hits both alike; ratios compare the two slices of a round.
Load comes from a separate process with its own event loop: closed-loop HTTP/1.1 keep-alive
connections over raw sockets (one request in flight per connection), so the generator costs
far less per request than either server. Measures (seconds per server, over all rounds):

- one row at concurrency 1 (``--latency-seconds``): p50, p99, requests/s;
- one row at concurrency 16 (``--duration``): requests/s, p50, p99, failures, and how the
  CPU time spread over the server's processes;
- ``--rows``-row batches at concurrency 1 and 2 (``--batch-seconds`` each); between the c=1
  rounds, the in-process limit below is measured too.

In-process limits (no HTTP, one thread): ``pipeline.predict`` on a DataFrame vs the API's
compiled path, both from parsed records (validated records → predictions) and from the JSON
body as ``POST /predict`` takes it (typed decoding, validation, predictions, JSON answer), one
row (median) and ``--rows`` rows (mean); and the booster alone on the feature matrix, through
the engine's direct call and through XGBoost's ``inplace_predict``. The batch target is held
against the faster of the two paths. Everything shares this machine's cores, the load
generator included: compare ratios within one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.rounds import RoundRatios, yes_no
from tools.processes import ServerProcess, cpu_seconds, environ_without, free_port, http_ok

MODEL = "bench-serving"
SEED = 7
ROOT = Path(__file__).resolve().parents[1]
MODULE = "bench.serving"  # children run ``python -m bench.serving --child ...`` from ROOT
BIN = Path(sys.executable).parent

# --- load generator (runs in its own process: --child loadgen) ------------------------------


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float:
            if not ordered:
                return float("nan")
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "rps": self.requests / self.seconds if self.seconds else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending ``request`` again as soon as each answer is in."""

    def __init__(self, request: bytes, run: _Run) -> None:
        self.request = request
        self.run = run
        self.buffer = b""
        self.need = -1
        self.status = 0
        self.sent = 0.0
        self.transport: Any = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].lower()
                self.status = int(head[9:12])
                at = head.find(b"content-length:")
                if at < 0:
                    raise RuntimeError("response without Content-Length")
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            self.buffer = self.buffer[self.need :]
            self.need = -1
            if not self.run.record(time.perf_counter() - self.sent, self.status):
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    def __init__(self, deadline: float, max_requests: int | None) -> None:
        self.deadline = deadline
        self.max_requests = max_requests
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0

    def record(self, seconds: float, status: int) -> bool:
        """Count one answer; False when the run is over."""
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != 200:
            self.errors += 1
        if self.max_requests is not None and len(self.latencies) >= self.max_requests:
            return False
        return time.perf_counter() < self.deadline


async def drive(
    port: int,
    request: bytes,
    concurrency: int,
    seconds: float,
    max_requests: int | None = None,
) -> LoadResult:
    """Closed-loop load: ``concurrency`` connections, each with one request in flight."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    run = _Run(start + seconds, max_requests)
    connections = []
    for _ in range(concurrency):
        _, protocol = await loop.create_connection(
            lambda: _Connection(request, run), "127.0.0.1", port
        )
        connections.append(protocol)
    await asyncio.gather(*(c.closed for c in connections))
    elapsed = time.perf_counter() - start
    return LoadResult(len(run.latencies), run.errors, elapsed, run.latencies, run.statuses)


def http_request(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def child_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    body = Path(spec["body_file"]).read_bytes()
    request = http_request(spec["port"], spec["path"], body)
    if spec.get("warmup"):
        asyncio.run(drive(spec["port"], request, spec["concurrency"], spec["warmup"]))
    result = asyncio.run(
        drive(
            spec["port"],
            request,
            spec["concurrency"],
            spec["seconds"],
            spec.get("max_requests"),
        )
    )
    return result.summary()


# --- training, servers, in-process limits ---------------------------------------------------


def child_train(work: Path, trees: int, rows: int) -> dict[str, Any]:
    """Train and register the model in the embedded store under ``work``; write samples."""
    import logging

    import yaml

    from ml_model.config import Task, load_config
    from ml_model.synthetic import TARGET, make_dataset
    from ml_model.train import train

    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    frame = make_dataset(rows, Task.REGRESSION, seed=SEED)
    frame.to_parquet(work / "train.parquet")
    raw = {
        "data": {"source": str(work / "train.parquet"), "target": TARGET},
        "task": "regression",
        "model": {
            "device": "cpu",
            "params": {"n_estimators": trees, "max_depth": 6, "learning_rate": 0.1},
        },
        "training": {"seed": SEED, "cv_folds": None},
        "mlflow": {"experiment": MODEL, "registered_model": MODEL},
    }
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = train(load_config(config_path), config_path)
    # Request rows: fresh draws from the same generator (with its missing values).
    sample = make_dataset(5000, Task.REGRESSION, seed=SEED + 1).drop(columns=[TARGET])
    sample.to_parquet(work / "sample.parquet")
    return {"version": result.version, "run_id": result.run_id}


def _records(frame: Any) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [dict(zip(clean.columns, row, strict=True)) for row in clean.itertuples(index=False)]


def write_bodies(work: Path, rows: int) -> dict[str, Path]:
    """Request bodies: one row and ``rows`` rows, in our format and MLflow's."""
    import pandas as pd

    sample = pd.read_parquet(work / "sample.parquet")
    one, batch = _records(sample.head(1)), _records(sample.head(rows))
    columns = list(sample.columns)
    bodies = {
        "api_one": json.dumps(one[0]),
        "api_batch": json.dumps(batch),
        "mlflow_one": json.dumps(
            {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in one]}}
        ),
        "mlflow_batch": json.dumps(
            {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in batch]}}
        ),
    }
    paths = {}
    for name, text in bodies.items():
        paths[name] = work / f"{name}.json"
        paths[name].write_text(text)
    return paths


def _timed(fn: Callable[[], Any], seconds: float, min_runs: int = 5) -> list[float]:
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_runs:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def child_inprocess(work: Path, version: str, rows: int, seconds: float) -> dict[str, Any]:
    """pipeline.predict vs the compiled path, one thread, one row and ``rows`` rows: median
    seconds per call for one row, mean seconds per call (as rows/s measures) for ``rows``."""
    import pandas as pd

    from ml_model.engine.parity import relative_difference
    from ml_model.model_io import load_pipeline
    from ml_model.tracking import connect
    from prediction_api.answers import INVOCATIONS, answer
    from prediction_api.decoder_process import PREDICT
    from prediction_api.registry import Registry, Target
    from prediction_api.settings import ApiSettings

    connect()
    pipeline = load_pipeline(f"models:/{MODEL}/{version}")
    settings = ApiSettings(model_name=MODEL, max_rows=max(rows, 10_000))
    model = Registry(settings).load(settings, Target(version, ""))

    def compiled_path(records: list[dict[str, Any]]) -> Any:
        return model.predict(model.inputs.records(records, ("body",)))

    sample = pd.read_parquet(work / "sample.parquet")
    out: dict[str, Any] = {}
    for n in (1, rows):
        frame = sample.head(n)
        records = _records(frame)
        body = json.dumps(records if n > 1 else records[0]).encode()
        columns = list(frame.columns)
        split = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
        split_body = json.dumps({"dataframe_split": split}).encode()
        average = statistics.median if n == 1 else statistics.mean
        matrix = model.compiled.matrix(model.inputs.records(records, ("body",)))
        call = model.compiled.booster
        out[str(n)] = {
            "pipeline_s": average(_timed(partial(pipeline.predict, frame), seconds)),
            "inplace_s": average(_timed(partial(call.inplace_predict, matrix), seconds)),
            "booster_s": average(_timed(partial(call, matrix), seconds)),
            "ours_s": average(_timed(partial(compiled_path, records), seconds)),
            "ours_json_s": average(_timed(partial(answer, model, PREDICT, body), seconds)),
            "ours_split_s": average(
                _timed(partial(answer, model, INVOCATIONS, split_body), seconds)
            ),
        }
    check = sample.head(rows)
    out["max_relative_difference"] = relative_difference(
        compiled_path(_records(check)).values, pipeline.predict(check)
    )
    out["direct_booster_call"] = model.compiled.booster.direct
    return out


def child_limits(work: Path, version: str, rows: int) -> None:
    """Serve in-process batch measurements on demand: each stdin line ``SECONDS`` answers one
    JSON line with the mean seconds per ``rows``-row call of the compiled path, from parsed
    records and from the JSON body (the HTTP batches run between these slices)."""

    import pandas as pd

    from ml_model.tracking import connect
    from prediction_api.answers import answer
    from prediction_api.decoder_process import PREDICT
    from prediction_api.registry import Registry, Target
    from prediction_api.settings import ApiSettings

    connect()
    settings = ApiSettings(model_name=MODEL, max_rows=max(rows, 10_000))
    model = Registry(settings).load(settings, Target(version, ""))
    records = _records(pd.read_parquet(work / "sample.parquet").head(rows))
    body = json.dumps(records).encode()

    def compiled_path() -> Any:
        return model.predict(model.inputs.records(records, ("body",)))

    print("ready", flush=True)
    for line in sys.stdin:
        seconds = float(line)
        result = {
            "ours_s": _timed(compiled_path, seconds),
            "ours_json_s": _timed(partial(answer, model, PREDICT, body), seconds),
        }
        print(json.dumps(result), flush=True)


class Limits:
    """The ``--child limits`` process: in-process measurements between HTTP slices."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE, *args, "--child", "limits"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the in-process measurement process failed to start")

    def measure(self, seconds: float) -> dict[str, list[float]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{seconds}\n")
        self.process.stdin.flush()
        result: dict[str, list[float]] = json.loads(self.process.stdout.readline())
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def ready_after(process: ServerProcess, url: str, timeout: float) -> float:
    """Seconds until ``url`` answers 2xx; exits with the log tail if ``process`` dies or stalls."""
    start = time.perf_counter()
    try:
        process.wait_until(lambda: http_ok(url), timeout, interval=0.05)
    except (RuntimeError, TimeoutError) as error:
        raise SystemExit(f"bench: {error}") from None
    return time.perf_counter() - start


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def cpu_seconds_of(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each process of ``pids`` still running."""
    return {pid: used for pid in pids if (used := cpu_seconds(pid)) is not None}


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", MODULE, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: child {args[:2]} failed with {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def load(port: int, path: str, body: Path, concurrency: int, seconds: float, **extra: Any) -> Any:
    spec = {
        "port": port,
        "path": path,
        "body_file": str(body),
        "concurrency": concurrency,
        "seconds": seconds,
        **extra,
    }
    return run_child(["--child", "loadgen", "--spec", json.dumps(spec)])


@dataclass(frozen=True)
class Served:
    """A server under measurement: its process, port, route and request bodies."""

    name: str
    process: ServerProcess
    port: int
    path: str
    one: Path
    batch: Path


# Measures, in order: key, body, concurrency, the argument giving each server's seconds of it.
MEASURES = (
    ("c1", "one", 1, "latency_seconds"),
    ("c16", "one", 16, "duration"),
    ("batch", "batch", 1, "batch_seconds"),
    ("batch_c2", "batch", 2, "batch_seconds"),
)


def machine_busy_share(window: float) -> float:
    """Share of the machine's CPU time that was busy over ``window`` seconds (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields), idle

    total_before, idle_before = sample()
    time.sleep(window)
    total_after, idle_after = sample()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def settle(max_seconds: float = 10.0) -> None:
    """Wait until the machine is mostly idle (the prediction log's writer done with the last
    slice's rows), so that no slice pays for the one before it."""
    deadline = time.perf_counter() + max_seconds
    while machine_busy_share(0.25) > 0.15 and time.perf_counter() < deadline:
        pass


def interleaved(
    servers: list[Served], args: argparse.Namespace, limits: Limits
) -> dict[str, dict[str, Any]]:
    """Each measure in ``args.rounds`` rounds; in every round each server gets one slice in
    turn, so machine noise hits all alike. Between the batch slices at c=1, the in-process
    batch limit is measured too. Per server and measure: requests/s over all slices, the
    median of the slices' p50 and p99, and each slice (for within-round ratios)."""
    results: dict[str, dict[str, Any]] = {server.name: {} for server in servers}
    inprocess: dict[str, list[float]] = {"ours_s": [], "ours_json_s": []}
    for key, body, concurrency, seconds_arg in MEASURES:
        seconds = getattr(args, seconds_arg) / args.rounds
        print(f"bench: {key}: {args.rounds} rounds of {seconds:g}s per server", file=sys.stderr)
        slices: dict[str, list[dict[str, Any]]] = {server.name: [] for server in servers}
        cpu: dict[str, dict[int, float]] = {server.name: {} for server in servers}
        for _ in range(args.rounds):
            for server in servers:
                settle()
                pids = descendants(server.process.popen.pid)
                before = cpu_seconds_of(pids)
                request_body = server.one if body == "one" else server.batch
                measured = load(
                    server.port, server.path, request_body, concurrency, seconds, warmup=0.5
                )
                after = cpu_seconds_of(pids)
                for pid in pids:
                    used = after.get(pid, 0.0) - before.get(pid, 0.0)
                    cpu[server.name][pid] = cpu[server.name].get(pid, 0.0) + used
                slices[server.name].append(measured)
            if key == "batch":
                for name, times in limits.measure(seconds / 2).items():
                    inprocess[name] += times
        rows = args.rows if body == "batch" else 1
        for server in servers:
            results[server.name][key] = _pooled(slices[server.name], rows, cpu[server.name])
    results["inprocess_batch_limit"] = {
        name: args.rows / statistics.mean(times) for name, times in inprocess.items()
    }
    return results


def _pooled(slices: list[dict[str, Any]], rows: int, cpu: dict[int, float]) -> dict[str, Any]:
    requests = sum(s["requests"] for s in slices)
    seconds = sum(s["seconds"] for s in slices)
    total = sum(cpu.values()) or 1.0
    busy = sorted((u for u in cpu.values() if u > 0.05 * total), reverse=True)
    return {
        "requests": requests,
        "errors": sum(s["errors"] for s in slices),
        "rps": requests / seconds,
        "rows_per_s": requests * rows / seconds,
        "p50_ms": statistics.median(s["p50_ms"] for s in slices),
        "p99_ms": statistics.median(s["p99_ms"] for s in slices),
        "cpu_share": [round(u / total, 2) for u in busy],
        "slices": slices,
    }


# --- report -------------------------------------------------------------------------------


def _ratio(ours: float, theirs: float, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "n/a"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.1f}x"


def _round_ratios(ours: dict[str, Any], theirs: dict[str, Any], field: str, higher: bool) -> str:
    """Our slice against theirs in the same round, over the rounds (``bench.rounds``)."""
    ratios = [
        (o[field] / t[field] if higher else t[field] / o[field])
        for o, t in zip(ours["slices"], theirs["slices"], strict=True)
        if o[field] and t[field]
    ]
    return RoundRatios.of(ratios).text(digits=1) if ratios else "n/a"


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    api, ml, inproc = results["api"], results["mlflow"], results["inprocess"]
    lines = [
        f"Model: {args.trees} trees, depth 6, 8 numeric + 4 categorical features (one-hot); "
        f"our API: {args.api_workers} worker(s); mlflow models serve: "
        f"{args.mlflow_workers} worker(s); both running, measured in turns: {args.rounds} "
        f"rounds, one slice per server each; {os.cpu_count()} CPUs shared with the load "
        "generator. Latencies: median of the slices'; ratios: ours against theirs in the "
        "same round, median (range; 90 % interval of the median, see bench.rounds).",
        "",
        "| measure | mlflow models serve | our API | ratio (better = >1) |",
        "|---|---:|---:|---:|",
    ]

    def row(label: str, key: str, field: str, higher: bool, fmt: str = "{:.2f}") -> None:
        ratio = _round_ratios(api[key], ml[key], "rps" if field == "rows_per_s" else field, higher)
        lines.append(
            f"| {label} | {fmt.format(ml[key][field])} | {fmt.format(api[key][field])} | {ratio} |"
        )

    row("c=1 one row: p50 latency (ms)", "c1", "p50_ms", False)
    row("c=1 one row: p99 latency (ms)", "c1", "p99_ms", False)
    row("c=1 one row: requests/s", "c1", "rps", True, "{:.0f}")
    row(f"c=16 one row ({args.duration:g}s each): requests/s", "c16", "rps", True, "{:.0f}")
    row("c=16 one row: p50 latency (ms)", "c16", "p50_ms", False)
    row("c=16 one row: p99 latency (ms)", "c16", "p99_ms", False)
    lines.append(f"| c=16: failed requests | {ml['c16']['errors']} | {api['c16']['errors']} | |")
    lines.append(
        f"| c=16: CPU share per busy process | {ml['c16']['cpu_share']} | "
        f"{api['c16']['cpu_share']} | |"
    )
    row(f"{args.rows}-row batches, c=1: rows/s", "batch", "rows_per_s", True, "{:.0f}")
    row(f"{args.rows}-row batches, c=2: rows/s", "batch_c2", "rows_per_s", True, "{:.0f}")
    row(f"{args.rows}-row batch, c=1: p50 latency (ms)", "batch", "p50_ms", False)
    lines += [
        "",
        "| in process, one thread | pipeline.predict | our compiled path | ratio |",
        "|---|---:|---:|---:|",
    ]
    one, many = inproc["1"], inproc[str(args.rows)]
    lines.append(
        f"| one row (ms) | {one['pipeline_s'] * 1e3:.3f} | {one['ours_s'] * 1e3:.3f} "
        f"(from the JSON body {one['ours_json_s'] * 1e3:.3f}) | "
        f"{one['pipeline_s'] / one['ours_s']:.0f}x |"
    )
    lines.append(
        f"| {args.rows} rows (rows/s) | {args.rows / many['pipeline_s']:.0f} | "
        f"{args.rows / many['ours_s']:.0f} (from the JSON body "
        f"{args.rows / many['ours_json_s']:.0f}) | {many['pipeline_s'] / many['ours_s']:.1f}x |"
    )
    lines.append(
        f"| the booster alone on the feature matrix: one row (ms), {args.rows} rows (rows/s) | | "
        f"{one['booster_s'] * 1e3:.3f}, {args.rows / many['booster_s']:.0f} | |"
    )
    lines.append(
        "| the same through XGBoost's own `inplace_predict`: one row (ms), "
        f"{args.rows} rows (rows/s) | | {one['inplace_s'] * 1e3:.3f}, "
        f"{args.rows / many['inplace_s']:.0f} | one row "
        f"{one['inplace_s'] / one['booster_s']:.2f}x slower |"
    )
    lines.append(
        f"| {args.rows} rows as /invocations dataframe_split, from the JSON body (rows/s) | "
        f"{args.rows / many['pipeline_s']:.0f} | {args.rows / many['ours_split_s']:.0f} "
        f"({many['ours_json_s'] / many['ours_split_s']:.2f}x /predict's) | "
        f"{many['pipeline_s'] / many['ours_split_s']:.1f}x |"
    )
    limit = max(api["batch_limit"].values())
    batch = max(api["batch"]["rows_per_s"], api["batch_c2"]["rows_per_s"])
    c16_ratio = _round_ratios(api["c16"], ml["c16"], "rps", True)
    checks = [
        ("c=1 one row p50 <= 0.6 ms", api["c1"]["p50_ms"] <= 0.6, f"{api['c1']['p50_ms']:.3f} ms"),
        ("c=16 p99 <= 6 ms", api["c16"]["p99_ms"] <= 6, f"{api['c16']['p99_ms']:.2f} ms"),
        (
            "c=16 throughput >= 20x mlflow models serve (median of the rounds)",
            float(c16_ratio.split("x")[0]) >= 20 if c16_ratio != "n/a" else False,
            c16_ratio,
        ),
        (
            f"{args.rows}-row batches >= 200k rows/s (the better of c=1 and c=2)",
            batch >= 200_000,
            f"{batch:.0f} rows/s",
        ),
        (
            "batches >= half the in-process booster-only limit (its feature matrix built)",
            batch >= 0.5 * args.rows / many["booster_s"],
            f"{100 * batch * many['booster_s'] / args.rows:.0f} % of "
            f"{args.rows / many['booster_s']:.0f} rows/s",
        ),
        (
            "batches >= half the in-process compiled path (the faster of its two measures, "
            "taken between the c=1 slices)",
            batch >= 0.5 * limit,
            f"{100 * batch / limit:.0f} % of {limit:.0f} rows/s",
        ),
        (
            "ready within 5 s once MLflow is reachable (its first healthy answer → /ready 200)",
            api["ready_after_mlflow_s"] < 5,
            f"{api['ready_after_mlflow_s']:.2f} s (process start → /health: "
            f"{api['health_s']:.2f} s)",
        ),
        (
            "compiled path = pipeline.predict (rel. diff ≤ 1e-6)",
            inproc["max_relative_difference"] <= 1e-6,
            f"{inproc['max_relative_difference']:.1e}",
        ),
    ]
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {yes_no(ok)} | {value} |" for name, ok, value in checks]
    return "\n".join(lines)


# --- driver -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at concurrency 16")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="seconds at c=1")
    parser.add_argument("--batch-seconds", type=float, default=10.0, help="seconds of batches")
    parser.add_argument("--rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--mlflow-workers", type=int, default=1, help="its default: 1")
    parser.add_argument("--inprocess-seconds", type=float, default=3.0)
    parser.add_argument(
        "--rounds", type=int, default=5, help="turns per measure; each server gets one slice each"
    )
    parser.add_argument(
        "--log-sample-rate", help="the API's API_LOG_SAMPLE_RATE (default: its own, 1: all logged)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--child", choices=["loadgen", "train", "inprocess", "limits"], help=argparse.SUPPRESS
    )
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    return parser.parse_args()


API, MLFLOW = "our API", "mlflow models serve"


def start_api(
    work: Path,
    env: dict[str, str],
    home: Path,
    bodies: dict[str, Path],
    args: Any,
    running: contextlib.ExitStack,
) -> tuple[Served, dict[str, float]]:
    """Start the API before MLflow (it must come up without it), then ``mlflow server`` on
    the store the model was trained into (left running: the API follows its alias); time
    readiness from MLflow's first healthy answer."""
    port, mlflow_port = free_port(), free_port()
    api_env = {
        **env,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "API_MODEL_NAME": MODEL,
        "API_PORT": str(port),
        "API_WORKERS": str(args.api_workers),
        "API_MAX_ROWS": str(max(args.rows, 10_000)),
        **({"API_LOG_SAMPLE_RATE": args.log_sample_rate} if args.log_sample_rate else {}),
    }
    api = ServerProcess("prediction API", [str(BIN / "prediction-api")], work / "api.log", api_env)
    running.callback(api.stop)
    started = ready_after(api, f"http://127.0.0.1:{port}/health", 120)
    argv = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port)]
    argv += ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--workers", "1"]
    argv += ["--artifacts-destination", str(home / "artifacts")]
    server_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    tracking = ServerProcess("mlflow server", argv, work / "mlflow-server.log", server_env)
    running.callback(tracking.stop)
    ready_after(tracking, f"http://127.0.0.1:{mlflow_port}/health", 300)
    ready = ready_after(api, f"http://127.0.0.1:{port}/ready", 120)
    print(f"bench: API ready {ready:.2f}s after MLflow answered", file=sys.stderr)
    served = Served(API, api, port, "/predict", bodies["api_one"], bodies["api_batch"])
    return served, {"health_s": started, "ready_after_mlflow_s": ready}


def start_mlflow_serve(
    work: Path,
    env: dict[str, str],
    version: str,
    bodies: dict[str, Path],
    args: Any,
    running: contextlib.ExitStack,
) -> Served:
    port = free_port()
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/{version}"]
    argv += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(args.mlflow_workers)]
    serve_env = {**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    server = ServerProcess(MLFLOW, argv, work / "mlflow-serve.log", serve_env)
    running.callback(server.stop)
    ready_after(server, f"http://127.0.0.1:{port}/ping", 300)
    return Served(
        MLFLOW, server, port, "/invocations", bodies["mlflow_one"], bodies["mlflow_batch"]
    )


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp,
        contextlib.ExitStack() as running,
    ):
        work = Path(tmp)
        home = work / "store"
        env = environ_without("MLFLOW_", "API_")
        # `mlflow models serve` execs `uvicorn` by name: the environment's own must come first.
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        env.update(ML_MODEL_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", PATH=path)
        print(f"bench: training {args.trees} trees on {args.train_rows} rows", file=sys.stderr)
        train_args = ["--trees", str(args.trees), "--train-rows", str(args.train_rows)]
        trained = run_child(["--child", "train", "--work", str(work), *train_args], env)
        version = trained["version"]
        bodies = write_bodies(work, args.rows)
        served_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
        results: dict[str, Any] = {"trained": trained}
        print("bench: in-process limits", file=sys.stderr)
        inprocess = ["--child", "inprocess", "--work", str(work), "--version", version]
        inprocess += ["--rows", str(args.rows), "--inprocess-seconds", str(args.inprocess_seconds)]
        results["inprocess"] = run_child(inprocess, served_env)
        limits = Limits(
            ["--work", str(work), "--version", version, "--rows", str(args.rows)], served_env
        )
        running.callback(limits.close)
        api, readiness = start_api(work, env, home, bodies, args, running)
        mlflow = start_mlflow_serve(work, served_env, version, bodies, args, running)
        measured = interleaved([api, mlflow], args, limits)
        results["api"] = {
            **readiness,
            **measured[API],
            "batch_limit": measured["inprocess_batch_limit"],
        }
        results["mlflow"] = measured[MLFLOW]
    return results


def main() -> int:
    args = parse_args()
    if args.child == "loadgen":
        print(json.dumps(child_loadgen(json.loads(args.spec))))
        return 0
    if args.child == "train":
        print(json.dumps(child_train(args.work, args.trees, args.train_rows)))
        return 0
    if args.child == "limits":
        child_limits(args.work, args.version, args.rows)
        return 0
    if args.child == "inprocess":
        result = child_inprocess(args.work, args.version, args.rows, args.inprocess_seconds)
        print(json.dumps(result))
        return 0
    results = benchmark(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
