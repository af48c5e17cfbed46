"""Hostile request bodies against the prediction API: bounded work, and valid traffic unharmed.

    .venv/bin/python -m bench.hostile [--repeats 5] [--rounds 4] [--load-seconds 8]
                                      [--concurrency 8] [--hostile-clients 4] [--trees 300]
                                      [--train-rows 20000] [--large-body-mib-per-second R]

(from the repository root; children run ``python -m bench.serving`` from there).

One run trains a regression pipeline into a fresh embedded store (``bench.serving``'s trainer:
8 numeric and 4 categorical features) and starts ``prediction-api`` (one uvicorn worker,
uvloop + httptools) on that store, and starts its decoder process (two bodies over 1 MiB).
Then, per hostile body, ``--repeats`` times one after the
other: the status, the time to the full answer (client side, upload included) and the growth
of the server's resident memory, its decoder process's included (``VmRSS`` in
``/proc/<pid>/status`` before the first and after the last; the peak, ``VmHWM``, is reset
before each body). Last, ``--rounds`` rounds of four slices, their order rotated each round:
one valid row on ``/predict`` at ``--concurrency`` for ``--load-seconds``, alone; while
``--hostile-clients`` clients post the hostile bodies in turn without pause; while they post
as many bodies a second to a sink instead (another process, uvloop, that reads each body,
discards it and answers 400); and alone again. Per slice its p50 / p99, and the p99's ratio
to the same round's alone. The sink shows what moving those bytes over loopback costs this
machine's cores, the floor for any server that reads what it is sent; alone again, what two
slices of the same load differ by here (the noise any ratio must be read against).
The API reads large bodies at ``API_LARGE_BODY_MIB_PER_SECOND`` while other requests are in
flight (its default, or ``--large-body-mib-per-second``; 0 reads them at full speed).

Goal (issue: hostile input costs bounded work): each hostile body answered 4xx in < 100 ms
with < 20 MB RSS growth; valid traffic's p99 unchanged while they run: within 1.1x of alone
(the median of the rounds), judged only when alone again is itself within 1.1x of alone
(otherwise the run says undecided: the machine moved more than the goal allows). Everything
shares this machine's cores: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from bench import serving
from bench.rounds import RoundRatios, yes_no
from tools.processes import ServerProcess, environ_without, free_port, port_open, running

PREDICT, INVOCATIONS = "/predict", "/invocations"
GOAL_MS = 100.0
GOAL_RSS_MIB = 20.0
P99_UNCHANGED = 1.1  # "unchanged": within this machine's run-to-run spread of the p99 alone
# A round's slices, in turn (the order rotated each round): the valid load alone, with the
# hostile clients, with them posting to the sink, and alone again (the control: what two
# slices of the same load differ by on this machine).
SLICES = ("alone", "attacked", "bytes_only", "alone_again")
SLICE_NAMES = {
    "alone": "valid load alone",
    "attacked": "with the hostile clients",
    "bytes_only": "with them posting to the sink",
    "alone_again": "valid load alone again",
}
SINK_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
    b"connection: close\r\n\r\n{}"
)
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*(\d+)")


def hostile_bodies(columns: list[str]) -> dict[str, tuple[str, bytes]]:
    """Name → (route, body): the issue's bodies and their relatives, 6 to 10 MB each, and some
    smaller bodies with many bad items."""
    rows = [dict.fromkeys(columns, "x") for _ in range(10_000)]  # every value of the wrong type
    return {
        "1.5M duplicate columns (dataframe_split)": (
            INVOCATIONS,
            json.dumps({"dataframe_split": {"columns": ["x"] * 1_500_000, "data": [[]]}}).encode(),
        ),
        "one record, 800k unknown keys": (
            PREDICT,
            b"{" + b",".join(b'"k%d":1' % i for i in range(800_000)) + b"}",
        ),
        "800k keys beside dataframe_records": (
            INVOCATIONS,
            b'{"dataframe_records":[{}],'
            + b",".join(b'"k%d":1' % i for i in range(800_000))
            + b"}",
        ),
        "10,000 rows, every value bad": (PREDICT, json.dumps(rows).encode()),
        "invalid UTF-8 in a key": (PREDICT, b'{"\xff":1}'),
    }


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` of ``/proc/<pid>/status`` summed over the process and its children (the
    decoder process)."""
    total = 0
    for member in serving.descendants(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1])
    return total


def reset_peak(pid: int) -> None:
    """Reset each process's ``VmHWM`` to its current RSS (Linux: ``clear_refs`` value 5)."""
    for member in serving.descendants(pid):
        Path(f"/proc/{member}/clear_refs").write_text("5")


def post(port: int, path: str, body: bytes) -> tuple[int, float, bytes]:
    """Status, milliseconds to the full answer and the answer, on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start = time.perf_counter()
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        return response.status, (time.perf_counter() - start) * 1000, answer
    finally:
        connection.close()


def measure_body(pid: int, port: int, path: str, body: bytes, repeats: int) -> dict[str, Any]:
    post(port, path, body)  # warm-up: first-use allocations are not this body's cost
    before = rss_kib(pid)
    reset_peak(pid)
    statuses, times = [], []
    answer = b""
    for _ in range(repeats):
        status, ms, answer = post(port, path, body)
        statuses.append(status)
        times.append(ms)
    parsed = json.loads(answer)  # the service's body, or MLflow's on /invocations
    detail = parsed.get("detail") or [{"msg": parsed.get("message", "")}]
    return {
        "bytes": len(body),
        "statuses": sorted(set(statuses)),
        "ms_median": statistics.median(times),
        "ms_max": max(times),
        "rss_growth_mib": (rss_kib(pid) - before) / 1024,
        "peak_growth_mib": (rss_kib(pid, "VmHWM") - before) / 1024,
        "answer_bytes": len(answer),
        "first_problem": detail[0].get("msg", ""),
        "problems_listed": len(detail),
    }


class SinkRequest(asyncio.Protocol):
    """One request on one connection: its head, then ``Content-Length`` body bytes, read and
    dropped; answered 400."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.head = b""
        self.body_left: int | None = None

    def data_received(self, data: bytes) -> None:
        if self.body_left is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            length = CONTENT_LENGTH.search(self.head, 0, end + 2)
            self.body_left = (int(length.group(1)) if length else 0) - (len(self.head) - end - 4)
        else:
            self.body_left -= len(data)
        if self.body_left <= 0:
            self.transport.write(SINK_ANSWER)
            self.transport.close()


def serve_sink(port: int) -> None:
    """The ``--sink-port`` process: the sink, until killed."""
    import uvloop

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(SinkRequest, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


def valid_load(port: int, body: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    summary: dict[str, Any] = serving.load(port, PREDICT, body, concurrency, seconds, warmup=1.0)
    return summary


def load_under_attack(
    port: int,
    body: Path,
    args: argparse.Namespace,
    bodies: list[tuple[str, bytes]],
    hostile_port: int,
    bodies_per_second: float | None = None,
) -> tuple[dict[str, Any], dict[int, int], float]:
    """Valid load on ``port`` while ``args.hostile_clients`` threads post the hostile bodies in
    turn to ``hostile_port``, back to back or, given ``bodies_per_second``, each client at its
    share of that rate. Returns the load's summary, the hostile answers' statuses and the
    hostile bodies posted per second."""
    stop = threading.Event()
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    interval = args.hostile_clients / bodies_per_second if bodies_per_second else 0.0

    def attack(offset: int) -> None:
        turn = offset
        due = time.perf_counter()
        while not stop.wait(max(0.0, due - time.perf_counter())):
            path, hostile = bodies[turn % len(bodies)]
            status, _, _ = post(hostile_port, path, hostile)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
            turn += 1
            due += interval

    threads = [
        threading.Thread(target=attack, args=(i,), daemon=True) for i in range(args.hostile_clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        result = valid_load(port, body, args.concurrency, args.load_seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    return result, statuses, sum(statuses.values()) / (time.perf_counter() - start)


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        work = Path(tmp)
        home = work / "store"
        env = environ_without("MLFLOW_", "API_")
        env.update(ML_MODEL_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")
        print(f"bench: training {args.trees} trees on {args.train_rows} rows", file=sys.stderr)
        train_args = ["--trees", str(args.trees), "--train-rows", str(args.train_rows)]
        serving.run_child(["--child", "train", "--work", str(work), *train_args], env)
        valid = serving.write_bodies(work, 1)["api_one"]
        columns = list(json.loads(valid.read_text()))
        port = free_port()
        api_env = {**env, "API_MODEL_NAME": serving.MODEL, "API_PORT": str(port)}
        if args.large_body_mib_per_second is not None:
            api_env["API_LARGE_BODY_MIB_PER_SECOND"] = str(args.large_body_mib_per_second)
        sink_port = free_port()
        sink_argv = [sys.executable, "-m", "bench.hostile", "--sink-port", str(sink_port)]
        with running("sink", sink_argv, work / "sink.log", lambda: port_open(sink_port), env):
            api = ServerProcess(
                "prediction API", [str(serving.BIN / "prediction-api")], work / "api.log", api_env
            )
            try:
                serving.ready_after(api, f"http://127.0.0.1:{port}/ready", 120)
                pid = api.popen.pid
                bodies = hostile_bodies(columns)
                # The decoder process starts at the first body over 1 MiB; the second waits for it.
                first_path, first_body = next(iter(bodies.values()))
                for _ in range(2):
                    post(port, first_path, first_body)
                results: dict[str, Any] = {"rss_start_mib": rss_kib(pid) / 1024, "bodies": {}}
                for name, (path, body) in bodies.items():
                    print(f"bench: {name}", file=sys.stderr)
                    results["bodies"][name] = {
                        "path": path,
                        **measure_body(pid, port, path, body, args.repeats),
                    }
                results["rounds"] = []
                statuses: Counter[int] = Counter()
                hostile = list(bodies.values())
                rate = 0.0  # hostile bodies answered a second in the last attacked slice
                for round_ in range(args.rounds):
                    slices: dict[str, Any] = {}
                    for kind in SLICES[round_ % len(SLICES) :] + SLICES[: round_ % len(SLICES)]:
                        print(f"bench: round {round_ + 1}: {SLICE_NAMES[kind]}", file=sys.stderr)
                        if kind == "attacked":
                            slices[kind], answered, rate = load_under_attack(
                                port, valid, args, hostile, port
                            )
                            slices["hostile_rate"] = rate
                            statuses.update(answered)
                        elif kind == "bytes_only":
                            slices[kind], _, slices["sink_rate"] = load_under_attack(
                                port, valid, args, hostile, sink_port, rate or None
                            )
                        else:
                            slices[kind] = valid_load(
                                port, valid, args.concurrency, args.load_seconds
                            )
                    results["rounds"].append(slices)
                results["hostile_statuses"] = statuses
                results["rss_end_mib"] = rss_kib(pid) / 1024
            finally:
                api.stop()
    return results


def _p99_ratio(slices: dict[str, Any], loaded: str) -> float:
    return float(slices[loaded]["p99_ms"] / slices["alone"]["p99_ms"])


def _p99_ratios(results: dict[str, Any], loaded: str) -> RoundRatios:
    """The ``loaded`` slices' p99 over the round's alone."""
    return RoundRatios.of([_p99_ratio(r, loaded) for r in results["rounds"]])


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"prediction-api, 1 worker; {os.cpu_count()} CPUs shared with the clients; "
        f"{args.repeats} posts of each body after one warm-up; RSS at start "
        f"{results['rss_start_mib']:.0f} MiB, at the end {results['rss_end_mib']:.0f} MiB.",
        "",
        "| hostile body | route | MB | status | ms (median / max) | RSS growth (MiB) "
        "| peak over start (MiB) | answer |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for name, r in results["bodies"].items():
        statuses = "/".join(map(str, r["statuses"]))
        lines.append(
            f"| {name} | {r['path']} | {r['bytes'] / 1e6:.1f} | {statuses} | "
            f"{r['ms_median']:.1f} / {r['ms_max']:.1f} | {r['rss_growth_mib']:+.1f} | "
            f"{r['peak_growth_mib']:.0f} | {r['problems_listed']} entries: "
            f"{r['first_problem'][:70]} |"
        )
    lines += [
        "",
        f"| valid one-row /predict, c={args.concurrency}, {args.load_seconds:g}s a slice "
        "| requests/s | p50 (ms) | p99 (ms) | max (ms) | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for number, slices in enumerate(results["rounds"], 1):
        for label, r in (
            ("alone", slices["alone"]),
            (
                f"with {args.hostile_clients} hostile clients "
                f"({slices['hostile_rate']:.1f} bodies/s answered)",
                slices["attacked"],
            ),
            (
                f"while they post {slices['sink_rate']:.1f} bodies/s to a sink (read and "
                "dropped by another process)",
                slices["bytes_only"],
            ),
            ("alone again (the control)", slices["alone_again"]),
        ):
            lines.append(
                f"| round {number}: {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} |"
            )
    bodies = results["bodies"].values()
    attacked = _p99_ratios(results, "attacked")
    control = _p99_ratios(results, "alone_again")
    checks = [
        (
            "every hostile body answered 4xx",
            yes_no(all(400 <= s < 500 for r in bodies for s in r["statuses"])),
        ),
        (
            f"each in < {GOAL_MS:g} ms (median)",
            yes_no(all(r["ms_median"] < GOAL_MS for r in bodies)),
        ),
        (
            f"RSS growth < {GOAL_RSS_MIB:g} MiB",
            yes_no(all(r["rss_growth_mib"] < GOAL_RSS_MIB for r in bodies)),
        ),
        (
            f"valid p99 with hostile clients within {P99_UNCHANGED:g}x of alone, median of the "
            f"rounds ({attacked.text()}; the sink "
            f"{_p99_ratios(results, 'bytes_only').text()}; alone again {control.text()})",
            attacked.verdict(P99_UNCHANGED, control),
        ),
    ]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {met} |" for name, met in checks]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(results["hostile_statuses"].items()))
    lines.append(f"\nHostile answers during the load: {statuses}.")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=5, help="posts of each hostile body")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="seconds a slice")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alone, attacked, sink and alone-again slices"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="valid-load connections")
    parser.add_argument("--hostile-clients", type=int, default=4)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument(
        "--large-body-mib-per-second",
        type=float,
        help="the API's API_LARGE_BODY_MIB_PER_SECOND (default: the API's own; 0: no pacing)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.sink_port is not None:
        serve_sink(args.sink_port)
        return 0
    results = benchmark(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
