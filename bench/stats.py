"""Intervals the experiments report."""

from __future__ import annotations

import math
import statistics


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% t-interval (n-1 degrees of freedom); nan below 2 values."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
