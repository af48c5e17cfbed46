"""A Spark standalone cluster on loopback for tests and benchmarks: a Master and Workers started
with ``spark-class`` (the pip wheel has no ``sbin/`` scripts), each in its own process group.

Every process gets ``PYSPARK_PYTHON`` set to this interpreter, so executors import the same
packages as the driver, and ``SPARK_LOCAL_IP=127.0.0.1``, so nothing binds beyond loopback.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tools.processes import ServerProcess, free_ports

SPARK_CLASS = str(Path(sys.executable).with_name("spark-class"))


class Cluster:
    """A running Master; ``start_worker`` adds Workers, ``stop`` ends them all."""

    def __init__(self, folder: Path, env: Mapping[str, str]) -> None:
        self.folder = folder
        self.env = {**env, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
        port, self.ui_port = free_ports(2)
        self.url = f"spark://127.0.0.1:{port}"
        argv = [SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                "--port", str(port), "--webui-port", str(self.ui_port)]  # fmt: skip
        self.master = ServerProcess("spark master", argv, folder / "master.log", self.env)
        self.workers: list[ServerProcess] = []
        try:
            self.master.wait_until(lambda: self.alive_workers() is not None, timeout=120)
        except BaseException:
            self.master.stop()
            raise

    def alive_workers(self) -> int | None:
        """How many Workers the Master counts alive; None while it does not answer."""
        url = f"http://127.0.0.1:{self.ui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(json.loads(response.read())["aliveworkers"])
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return None

    def start_worker(self, cores: int = 1, memory: str = "1g") -> ServerProcess:
        """A Worker offering ``cores`` and ``memory`` to executors, awaited until the Master
        lists it."""
        index = len(self.workers)
        alive = self.alive_workers() or 0
        env = {**self.env, "SPARK_WORKER_DIR": str(self.folder / f"worker-{index}")}
        argv = [SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", self.url,
                "--cores", str(cores), "--memory", memory,
                "--webui-port", str(free_ports(1)[0])]  # fmt: skip
        log = self.folder / f"worker-{index}.log"
        worker = ServerProcess(f"spark worker {index}", argv, log, env)
        self.workers.append(worker)
        worker.wait_until(lambda: (self.alive_workers() or 0) > alive, timeout=120)
        return worker

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            process.stop()


@contextmanager
def standalone_cluster(
    folder: Path, env: Mapping[str, str], cores: int = 1, memory: str = "1g"
) -> Iterator[Cluster]:
    """A Master and one Worker of ``cores`` cores for the ``with`` block."""
    cluster = Cluster(folder, env)
    try:
        cluster.start_worker(cores, memory)
        yield cluster
    finally:
        cluster.stop()
