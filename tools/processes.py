"""Free ports, polling, and server processes started, awaited and stopped reliably.

The one implementation behind the tests, ``scripts/`` and ``bench/``: polling goes through
tenacity, servers run in their own process group with their output in a log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now (all are held
    open together while they are picked, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def environ_without(*prefixes: str) -> dict[str, str]:
    """This process's environment less the variables starting with any of ``prefixes``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def poll(
    probe: Callable[[], T | None],
    what: str | Callable[[], str],
    timeout: float = 60.0,
    interval: float = 0.1,
) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something other than None,
    and return that. After ``timeout`` seconds raise TimeoutError naming ``what`` (a function
    is called then, to describe what is still missing). Exceptions from ``probe`` propagate."""
    retrying = Retrying(
        retry=retry_if_result(lambda value: value is None),
        wait=wait_fixed(interval),
        stop=stop_after_delay(timeout),
    )
    try:
        value = retrying(probe)
    except RetryError:
        description = what if isinstance(what, str) else what()
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {description}") from None
    return cast(T, value)  # retry_if_result returned only a value other than None


def wait_until(
    condition: Callable[[], bool],
    what: str | Callable[[], str],
    timeout: float = 60.0,
    interval: float = 0.1,
) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` after ``timeout``."""
    poll(lambda: True if condition() else None, what, timeout, interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET on ``url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` (its threads, not its children); None
    once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class ServerProcess:
    """A server started in its own process group; its output goes to a log file (appended)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the process printed, for failure messages."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self, ready: Callable[[], bool], timeout: float = 60.0, interval: float = 0.2
    ) -> None:
        """Poll ``ready`` until it holds. Raises RuntimeError with the log tail as soon as the
        process exits, TimeoutError with the log tail after ``timeout`` seconds."""

        def probe() -> bool | None:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
                )
            return True if ready() else None

        def missing() -> str:
            return f"{self.name} to be ready; its log ends:\n{self.log_tail()}"

        poll(probe, missing, timeout, interval)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()


@contextmanager
def running(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[ServerProcess]:
    """Run a server for the duration of a ``with`` block, started and awaited."""
    process = ServerProcess(name, argv, log_path, env if env is not None else os.environ, cwd)
    try:
        process.wait_until(ready, timeout)
        yield process
    finally:
        process.stop()
