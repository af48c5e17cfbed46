"""Show the logs of the services a test relied on when that test fails.

Fixtures register each service's log file while the service runs; a failing test's report then
carries the tail of every registered log as an extra section, printed with the failure.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

TAIL_LINES = 40
_logs: dict[str, Path] = {}


def register(name: str, path: Path) -> None:
    """Attach ``path`` to the reports of tests that fail while ``name`` is registered."""
    _logs[name] = path


def unregister(name: str) -> None:
    _logs.pop(name, None)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path``, or a note that it does not exist."""
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for name, path in _logs.items():
            report.sections.append((f"{name} log ({path})", tail(path)))
    return report
