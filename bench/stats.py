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


def detectable(values: list[float], power: float = 0.8) -> float:
    """The smallest true mean difference a paired t-test at 5% (two-sided) would find with
    `power`, given the spread of `values` (paired differences): (t_0.975 + t_power) sd / sqrt(n)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan")
    t = stats.t.ppf(0.975, n - 1) + stats.t.ppf(power, n - 1)
    return float(t) * statistics.stdev(values) / math.sqrt(n)
