"""Running commands, logging progress and reporting failures for the e2e harness."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
LOG_DIR = Path(os.environ.get("MLOPS_E2E_LOG_DIR", REPO_ROOT / ".mlops" / "e2e" / "logs"))
STATE_DIR = Path(os.environ.get("MLOPS_E2E_STATE_DIR", "/run/mlops-e2e"))

_START = time.monotonic()


class HarnessError(RuntimeError):
    """A step of the harness failed; the message says which and shows the relevant output."""


def log(message: str) -> None:
    """One progress line on stderr, with the seconds since the harness started."""
    print(f"[e2e {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
    input_bytes: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing its output; raise HarnessError with that output on failure."""
    try:
        result = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            input=input_bytes.decode() if input_bytes is not None else None,
            # Never the caller's terminal: `docker compose run` would allocate a TTY.
            stdin=subprocess.DEVNULL if input_bytes is None else None,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as error:
        raise HarnessError(f"`{argv[0]}` is not installed: {error}") from error
    except subprocess.TimeoutExpired as error:
        raise HarnessError(f"`{' '.join(argv)}` did not finish within {timeout}s") from error
    if check and result.returncode != 0:
        raise HarnessError(
            f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n"
            f"{tail(result.stdout + result.stderr)}"
        )
    return result


def run_logged(
    argv: Sequence[str],
    log_name: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Run a long command with its output in LOG_DIR/<log_name>; on failure show the tail."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / log_name
    with log_path.open("w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            code = subprocess.run(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as error:
            raise HarnessError(
                f"`{' '.join(argv)}` did not finish within {timeout}s; log: {log_path}\n"
                f"{tail(log_path.read_text(errors='replace'))}"
            ) from error
    if code != 0:
        raise HarnessError(
            f"`{' '.join(argv)}` failed with exit code {code}; full log: {log_path}\n"
            f"{tail(log_path.read_text(errors='replace'))}"
        )
    return log_path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HarnessError(f"{what} needs root (run the e2e harness as root or under sudo)")


def which(command: str) -> str | None:
    return shutil.which(command)
