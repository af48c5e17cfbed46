"""Waiting for a service the tracking server needs at start (PostgreSQL, S3)."""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_exponential,
)

Report = Callable[[str], None]


def start_up_retrying(
    what: str,
    timeout: float,
    transient: Callable[[BaseException], bool],
    reason: Callable[[BaseException], str],
    report: Report,
) -> Retrying:
    """Retries while ``transient`` says an error may pass, 0.5 s doubling to 5 s, with no sleep
    that would end past ``timeout``; each retry is reported as "<what> not ready (attempt N):
    <reason>; retrying in S s". The last error is re-raised."""

    def announce(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        report(
            f"{what} not ready (attempt {state.attempt_number}): "
            f"{reason(failure) if failure else 'no answer'}; "
            f"retrying in {state.upcoming_sleep:g}s"
        )

    return Retrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential(multiplier=0.5, max=5.0),
        stop=stop_before_delay(timeout),
        before_sleep=announce,
        reraise=True,
    )
