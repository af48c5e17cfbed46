"""Ratios measured once per round (one slice against another of the same round), summarised.

This machine's speed drifts by tens of percent over seconds, so a bench compares slices of the
same round and reports the median of the rounds' ratios with its range and a 90 % interval:
the 5th and 95th percentiles of the medians of 2,000 resamples of the rounds (bootstrap).
An effect is shown when that interval excludes what two identical slices differ by. A goal
on a ratio is judged only when two identical slices (the bench's control) agree within the
goal's bound: otherwise the run was too noisy to tell, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2_000


@dataclass(frozen=True)
class RoundRatios:
    median: float
    low: float  # the range
    high: float
    interval: tuple[float, float]  # the median's 90 % bootstrap interval

    @classmethod
    def of(cls, ratios: Sequence[float]) -> RoundRatios:
        values = np.asarray(ratios, dtype=float)
        resampled = np.random.default_rng(0).choice(values, size=(RESAMPLES, values.size))
        medians = np.median(resampled, axis=1)
        return cls(
            float(np.median(values)),
            float(values.min()),
            float(values.max()),
            (float(np.percentile(medians, 5)), float(np.percentile(medians, 95))),
        )

    def verdict(self, bound: float, control: RoundRatios) -> str:
        """``yes`` when the median is at most ``bound``, ``NO`` when it is over; ``undecided``
        when ``control`` (the same ratio between two slices of the same load) is itself further
        from 1 than ``bound`` in its median, either way: the machine moved more than the goal
        allows, so this run cannot tell."""
        if max(control.median, 1 / control.median) > bound:
            return f"undecided (the control's median is {control.median:.2f}x)"
        return yes_no(self.median <= bound)

    def text(self, digits: int = 2) -> str:
        """``median (low-high; 90 % a-b)``."""
        f = f"{{:.{digits}f}}"
        return (
            f"{f.format(self.median)}x ({f.format(self.low)}-{f.format(self.high)}x; 90 % "
            f"{f.format(self.interval[0])}-{f.format(self.interval[1])}x)"
        )


def yes_no(met: bool) -> str:
    """A target's cell in a bench's verdict table."""
    return "yes" if met else "NO"
