"""tools/prereqs.py: a ring whose prerequisites cannot be installed is skipped locally with one
line naming them and how to install them, and fails under CI."""

from __future__ import annotations

import pytest

from tools import prereqs

MISSING = prereqs.Tool("no-such-command-here", "no-such-package", "a test prerequisite")


@pytest.fixture
def ring_without_its_tool(monkeypatch: pytest.MonkeyPatch) -> str:
    """A ring needing a command that is nowhere, on a machine where nothing may be installed
    (as without root)."""
    monkeypatch.setitem(prereqs.RINGS, "needy", (MISSING,))
    monkeypatch.setattr(prereqs, "can_install", lambda: False)
    return "needy"


def test_a_local_run_skips_the_ring_with_one_line(
    ring_without_its_tool: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert prereqs.main([ring_without_its_tool]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "needy ring skipped: missing no-such-command-here (a test prerequisite); "
        "install with: sudo apt-get install no-such-package"
    ]


def test_ci_fails_instead_of_skipping(
    ring_without_its_tool: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    assert prereqs.main([ring_without_its_tool]) == 1
    assert "needy ring cannot run in CI: missing no-such-command-here" in capsys.readouterr().out


def test_rings_whose_tools_are_there_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(prereqs.RINGS, "python", (prereqs.Tool("python3", "python3", "this"),))
    assert prereqs.missing_for("python") == []
    assert prereqs.main(["python"]) == 0


def test_an_unknown_ring_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert prereqs.main(["nonsense"]) == 1
    assert "rings: unit, demo, integration, compose, e2e" in capsys.readouterr().out
